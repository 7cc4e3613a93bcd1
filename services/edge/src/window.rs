//! The envelopes of one connection that the pipeline has not finished with (ADR 022): up
//! to `ARQONBUS_PIPELINE_WINDOW` of them (and `ARQONBUS_PIPELINE_WINDOW_BYTES` of their
//! frames) in flight at once, their answers put back in the order the client sent them,
//! and the frames of each written in that order once what they acknowledge is stored.

use std::collections::VecDeque;

use bytes::Bytes;
use tokio::time::Instant;

use arqon_bus::{BusError, StoreConfirmation};
use arqon_proto::model::EdgeDelivery;
use arqon_protocol::MessageId;
use arqon_telemetry::metrics::TraceExemplar;

/// The connection's envelopes between the client and its frames.
#[derive(Default)]
pub(crate) struct Window {
    /// Envelopes sent into the pipeline (and replies the edge gave itself meanwhile),
    /// oldest first, answered or not. Boxed, as in `writing`: a queue keeps its buffer
    /// once it has held something, and every connection has sent something (its joins),
    /// so the buffer holds pointers, not the entries.
    sent: VecDeque<Box<Sent>>,
    /// Answered envelopes, oldest first: their frames wait for their turn, or for the
    /// stream to confirm the message they acknowledge.
    writing: VecDeque<Box<Writing>>,
    /// An envelope that goes alone, read while others were in flight: it is sent once
    /// they are all done.
    held: Option<Box<Outgoing>>,
    /// The client's bytes (frame lengths) of the envelopes in `sent` and `writing`.
    bytes: usize,
}

/// An envelope on its way into the pipeline.
pub(crate) struct Outgoing {
    pub(crate) sequence: u64,
    pub(crate) id: MessageId,
    pub(crate) payload: Bytes,
    pub(crate) span: tracing::Span,
    pub(crate) to_dispatcher: bool,
    /// The acknowledgement the edge writes once the message is published (a room
    /// `message`); written at read time, so that the pipeline's answer need not carry a
    /// second copy of the payload.
    pub(crate) ack: Option<Bytes>,
    /// The length of the client's frame.
    pub(crate) bytes: usize,
    /// A command or a private message: sent only when nothing else is in flight, and
    /// nothing follows it until it is answered. A command changes what later envelopes
    /// find (memberships, channels); a private message is delivered by the dispatcher,
    /// not published by the edge, so only its turn keeps it in order.
    pub(crate) alone: bool,
}

/// An envelope in the pipeline, or a reply that waits for the answers before it.
pub(crate) struct Sent {
    /// Its `Inbound::sequence`; 0 for a reply the edge gave itself.
    pub(crate) sequence: u64,
    /// Its `id`; none for a reply the edge gave itself.
    pub(crate) id: Option<MessageId>,
    pub(crate) sent_at: Instant,
    /// Its trace, when sampled: the exemplar of its latency.
    pub(crate) trace: Option<TraceExemplar>,
    /// See [`Outgoing::ack`].
    pub(crate) ack: Option<Bytes>,
    /// See [`Outgoing::bytes`].
    pub(crate) bytes: usize,
    alone: bool,
    answer: Option<Box<EdgeDelivery>>,
}

impl Sent {
    /// An envelope just published to the pipeline.
    pub(crate) fn envelope(outgoing: Outgoing, trace: Option<TraceExemplar>) -> Sent {
        Sent {
            sequence: outgoing.sequence,
            id: Some(outgoing.id),
            sent_at: Instant::now(),
            trace,
            ack: outgoing.ack,
            bytes: outgoing.bytes,
            alone: outgoing.alone,
            answer: None,
        }
    }

    /// A reply the edge gave itself (an error), written after the answers before it.
    pub(crate) fn reply(delivery: EdgeDelivery) -> Sent {
        Sent {
            sequence: 0,
            id: None,
            sent_at: Instant::now(),
            trace: None,
            ack: None,
            bytes: 0,
            alone: false,
            answer: Some(Box::new(delivery)),
        }
    }

    /// The answer, once it came.
    pub(crate) fn take_answer(&mut self) -> Option<Box<EdgeDelivery>> {
        self.answer.take()
    }
}

/// Frames whose turn has come, once `stored` (if any) resolves.
struct Writing {
    id: Option<MessageId>,
    frames: Vec<Bytes>,
    stored: Option<Stored>,
    /// The client's bytes it stands for.
    bytes: usize,
}

/// The stream's confirmation of a message the edge published.
pub(crate) struct Stored {
    pub(crate) confirmation: StoreConfirmation,
    /// Until when it may come.
    pub(crate) deadline: Instant,
    /// The publish's span (`edge.publish`), which ends with the wait.
    pub(crate) span: tracing::Span,
}

/// The frames of the oldest answered envelope, once its message is stored or is known
/// not to be.
pub(crate) struct Confirmed {
    pub(crate) id: Option<MessageId>,
    pub(crate) frames: Vec<Bytes>,
    pub(crate) stored: Result<u64, BusError>,
    pub(crate) span: tracing::Span,
}

impl Window {
    /// Envelopes and replies not yet written, held one included.
    pub(crate) fn len(&self) -> usize {
        self.sent.len() + self.writing.len() + usize::from(self.held.is_some())
    }

    /// Nothing in flight and nothing to write.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the connection may read its next frame: the window has room for one
    /// more envelope (`limit`) and for more bytes (`byte_limit`; one frame may take it
    /// past), and no envelope that goes alone is in flight or held.
    pub(crate) fn may_read(&self, limit: usize, byte_limit: usize) -> bool {
        self.held.is_none()
            && self.len() < limit
            && self.bytes < byte_limit
            && !self.sent.front().is_some_and(|sent| sent.alone)
    }

    /// Whether `limit` envelopes or `byte_limit` bytes are in the window.
    pub(crate) fn is_full(&self, limit: usize, byte_limit: usize) -> bool {
        self.len() >= limit || self.bytes >= byte_limit
    }

    /// Keeps an envelope that goes alone until the window is empty.
    pub(crate) fn hold(&mut self, outgoing: Outgoing) {
        self.held = Some(Box::new(outgoing));
    }

    /// The held envelope, once nothing else is in flight or to be written.
    pub(crate) fn take_held(&mut self) -> Option<Outgoing> {
        if self.sent.is_empty() && self.writing.is_empty() {
            self.held.take().map(|held| *held)
        } else {
            None
        }
    }

    pub(crate) fn push(&mut self, sent: Sent) {
        self.bytes += sent.bytes;
        self.sent.push_back(Box::new(sent));
    }

    /// Files an answer beside its envelope; hands it back when no envelope in flight has
    /// its sequence (it came after a `TIMEOUT`, or answers none).
    pub(crate) fn answer(&mut self, delivery: Box<EdgeDelivery>) -> Result<(), Box<EdgeDelivery>> {
        let Some(sequence) = delivery.completes else {
            return Err(delivery);
        };
        match self
            .sent
            .iter_mut()
            .find(|sent| sent.sequence == sequence && sent.answer.is_none())
        {
            Some(sent) => {
                sent.answer = Some(delivery);
                Ok(())
            }
            None => Err(delivery),
        }
    }

    /// The oldest envelope, if it has its answer: its turn has come.
    pub(crate) fn next_answered(&mut self) -> Option<Sent> {
        if self.sent.front()?.answer.is_some() {
            self.pop_sent()
        } else {
            None
        }
    }

    /// When the oldest unanswered envelope times out, if one is in flight.
    pub(crate) fn deadline(&self, timeout: std::time::Duration) -> Option<Instant> {
        self.sent.front().map(|sent| sent.sent_at + timeout)
    }

    /// The oldest envelope, if it has waited `timeout` for its answer by `now`.
    pub(crate) fn expired(&mut self, now: Instant, timeout: std::time::Duration) -> Option<Sent> {
        if self
            .sent
            .front()
            .is_some_and(|sent| sent.answer.is_none() && sent.sent_at + timeout <= now)
        {
            self.pop_sent()
        } else {
            None
        }
    }

    fn pop_sent(&mut self) -> Option<Sent> {
        let sent = self.sent.pop_front()?;
        self.bytes -= sent.bytes;
        Some(*sent)
    }

    /// Whether frames wait for their turn: the next answer's frames go behind them.
    pub(crate) fn is_writing(&self) -> bool {
        !self.writing.is_empty()
    }

    /// Frames to write in turn; after the stream confirms the message they acknowledge
    /// (or its deadline passes), when `stored`.
    /// `bytes` are the client's bytes they stand for, counted until they are written.
    pub(crate) fn write_later(
        &mut self,
        id: Option<MessageId>,
        frames: Vec<Bytes>,
        stored: Option<Stored>,
        bytes: usize,
    ) {
        self.bytes += bytes;
        self.writing.push_back(Box::new(Writing {
            id,
            frames,
            stored,
            bytes,
        }));
    }

    /// The frames at the head of the line that wait for nothing.
    pub(crate) fn next_ready(&mut self) -> Option<Vec<Bytes>> {
        if self.writing.front()?.stored.is_none() {
            self.pop_writing().map(|writing| writing.frames)
        } else {
            None
        }
    }

    fn pop_writing(&mut self) -> Option<Writing> {
        let writing = self.writing.pop_front()?;
        self.bytes -= writing.bytes;
        Some(*writing)
    }

    /// Whether the head of the line waits for the stream.
    pub(crate) fn awaits_confirmation(&self) -> bool {
        self.writing
            .front()
            .is_some_and(|writing| writing.stored.is_some())
    }

    /// Resolves once the stream confirms the message at the head of the line, or its
    /// deadline passes; pending for ever when the head waits for nothing. Cancel safe: the
    /// confirmation stays in place until it resolves.
    pub(crate) async fn confirmed(&mut self) -> Confirmed {
        let Some(Stored {
            confirmation,
            deadline,
            ..
        }) = self
            .writing
            .front_mut()
            .and_then(|writing| writing.stored.as_mut())
        else {
            return std::future::pending().await;
        };
        let stored = tokio::time::timeout_at(*deadline, confirmation)
            .await
            .unwrap_or(Err(BusError::Timeout));
        let Some(Writing {
            id,
            frames,
            stored: Some(Stored { span, .. }),
            ..
        }) = self.pop_writing()
        else {
            return std::future::pending().await;
        };
        Confirmed {
            id,
            frames,
            stored,
            span,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use arqon_protocol::{ClientId, EdgeId};

    fn answer(sequence: u64, frame: &'static str) -> Box<EdgeDelivery> {
        Box::new(EdgeDelivery {
            client_id: ClientId::generate_on(&EdgeId::generate()),
            membership: None,
            frames: vec![Bytes::from_static(frame.as_bytes())],
            completes: Some(sequence),
            publish: None,
        })
    }

    fn id() -> MessageId {
        MessageId::parse("arq_01ARZ3NDEKTSV4RRFFQ69G5FAV").unwrap_or_else(|e| panic!("{e}"))
    }

    /// An envelope of 100 bytes.
    fn outgoing(sequence: u64, alone: bool) -> Outgoing {
        Outgoing {
            sequence,
            id: id(),
            payload: Bytes::new(),
            span: tracing::Span::none(),
            to_dispatcher: false,
            ack: None,
            bytes: 100,
            alone,
        }
    }

    fn sent(sequence: u64, alone: bool) -> Sent {
        Sent::envelope(outgoing(sequence, alone), None)
    }

    fn stored(confirmation: StoreConfirmation, deadline: Instant) -> Stored {
        Stored {
            confirmation,
            deadline,
            span: tracing::Span::none(),
        }
    }

    fn frames(mut sent: Sent) -> Vec<Bytes> {
        sent.take_answer().map(|a| a.frames).unwrap_or_default()
    }

    #[test]
    fn answers_come_out_in_the_order_the_envelopes_went_in() {
        let mut window = Window::default();
        for sequence in 1..=3 {
            window.push(sent(sequence, false));
        }
        assert!(window.answer(answer(3, "c")).is_ok());
        assert!(window.answer(answer(2, "b")).is_ok());
        assert!(window.next_answered().is_none(), "1 is not answered yet");
        assert!(window.answer(answer(1, "a")).is_ok());
        let order: Vec<Vec<Bytes>> = std::iter::from_fn(|| window.next_answered())
            .map(frames)
            .collect();
        assert_eq!(
            order,
            [["a"], ["b"], ["c"]].map(|f| vec![Bytes::from(f[0])])
        );
        assert!(window.is_empty());
    }

    #[test]
    fn an_answer_for_nothing_in_flight_is_handed_back() {
        let mut window = Window::default();
        window.push(sent(1, false));
        assert!(window.answer(answer(7, "late")).is_err());
        let mut unsolicited = answer(1, "x");
        unsolicited.completes = None;
        assert!(window.answer(unsolicited).is_err());
        // A second answer to the same envelope is not filed over the first.
        assert!(window.answer(answer(1, "first")).is_ok());
        assert!(window.answer(answer(1, "second")).is_err());
        assert_eq!(
            window.next_answered().map(frames),
            Some(vec![Bytes::from("first")])
        );
    }

    #[test]
    fn the_window_limits_reading_and_an_envelope_that_goes_alone_stops_it() {
        let mut window = Window::default();
        assert!(window.may_read(2, 1000));
        window.push(sent(1, false));
        assert!(window.may_read(2, 1000));
        assert!(!window.may_read(2, 100), "full of bytes");
        window.push(sent(2, false));
        assert!(!window.may_read(2, 1000), "full");
        assert!(window.is_full(2, 1000));
        assert!(window.answer(answer(1, "a")).is_ok());
        let first = window.next_answered().map(|s| s.bytes).unwrap_or_default();
        window.write_later(None, vec!["a".into()], None, first);
        assert!(
            !window.may_read(2, 1000),
            "frames waiting to be written count"
        );
        assert!(!window.may_read(3, 200), "and so do their bytes");
        assert_eq!(window.next_ready(), Some(vec![Bytes::from("a")]));
        assert!(window.may_read(2, 200));

        window.hold(outgoing(3, true));
        assert!(
            !window.may_read(32, 1000),
            "nothing is read past a held envelope"
        );
        assert!(window.take_held().is_none(), "2 is still in flight");
        assert!(window.answer(answer(2, "b")).is_ok());
        let _ = window.next_answered();
        assert!(window.take_held().is_some());

        window.push(sent(3, true));
        assert!(
            !window.may_read(32, 1000),
            "nothing is read while a command is in flight"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_oldest_envelope_times_out_and_the_next_one_takes_its_place() {
        let timeout = Duration::from_secs(5);
        let mut window = Window::default();
        window.push(sent(1, false));
        tokio::time::advance(Duration::from_secs(1)).await;
        window.push(sent(2, false));
        assert!(window.answer(answer(2, "b")).is_ok());
        let now = Instant::now();
        assert!(window.expired(now, timeout).is_none());
        assert_eq!(window.deadline(timeout), Some(now + Duration::from_secs(4)));
        let later = now + Duration::from_secs(4);
        let expired = window.expired(later, timeout);
        assert_eq!(expired.map(|s| s.sequence), Some(1));
        // An answered envelope does not time out: its turn has come.
        assert!(window.expired(later + timeout, timeout).is_none());
        assert_eq!(
            window.next_answered().map(frames),
            Some(vec![Bytes::from("b")])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn frames_wait_for_the_stream_and_for_the_frames_before_them() {
        let mut window = Window::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<u64>();
        let confirmation =
            StoreConfirmation::from_future(async move { rx.await.map_err(|_| BusError::Timeout) });
        let deadline = Instant::now() + Duration::from_secs(5);
        window.write_later(
            None,
            vec!["ack 1".into()],
            Some(stored(confirmation, deadline)),
            100,
        );
        window.write_later(None, vec!["error 2".into()], None, 100);
        assert!(window.awaits_confirmation());
        assert!(window.next_ready().is_none(), "2 waits for 1");
        // Given up and taken up again: the confirmation is still there.
        let gave_up = tokio::time::timeout(Duration::from_millis(10), window.confirmed()).await;
        assert!(gave_up.is_err());
        assert!(tx.send(41).is_ok());
        let confirmed = window.confirmed().await;
        assert_eq!(confirmed.frames, vec![Bytes::from("ack 1")]);
        assert!(matches!(confirmed.stored, Ok(41)));
        assert_eq!(window.next_ready(), Some(vec![Bytes::from("error 2")]));

        // A stream that never confirms: the deadline answers.
        let (_tx, rx) = tokio::sync::oneshot::channel::<u64>();
        let never =
            StoreConfirmation::from_future(async move { rx.await.map_err(|_| BusError::Timeout) });
        window.write_later(
            None,
            vec!["ack 3".into()],
            Some(stored(never, Instant::now() + Duration::from_secs(5))),
            100,
        );
        let confirmed = window.confirmed().await;
        assert!(matches!(confirmed.stored, Err(BusError::Timeout)));
        assert!(window.is_empty());
        assert!(window.may_read(1, 1), "every byte is released");
    }
}
