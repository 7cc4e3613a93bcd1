//! A message received from a subscription or as a reply.

use bytes::Bytes;

use crate::bus::Bus;
use crate::error::BusError;
use crate::headers::Headers;

/// A message as a subscriber sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The subject it was published to (literal, never a wildcard).
    pub subject: String,
    /// Where the publisher waits for an answer, for requests.
    pub reply: Option<String>,
    /// Headers (empty when there were none).
    pub headers: Headers,
    /// The payload, opaque to the bus.
    pub payload: Bytes,
}

impl Message {
    /// Answers a request: publishes `payload` to this message's reply subject.
    /// Fails with [`BusError::InvalidSubject`] when the message was not a request.
    pub async fn respond(&self, bus: &Bus, payload: Bytes) -> Result<(), BusError> {
        self.respond_with_headers(bus, Headers::new(), payload)
            .await
    }

    /// Answers a request with headers (e.g. to carry the trace context back).
    pub async fn respond_with_headers(
        &self,
        bus: &Bus,
        headers: Headers,
        payload: Bytes,
    ) -> Result<(), BusError> {
        match &self.reply {
            Some(reply) => {
                bus.publish_with_headers(reply.clone(), headers, payload)
                    .await
            }
            None => Err(BusError::InvalidSubject(format!(
                "message on {:?} has no reply subject",
                self.subject
            ))),
        }
    }
}
