//! The WebSocket commands: `tail`, `publish`, `join`, `command`, `history`, `channels`.
//! Each connects with the SDK, as any client would.

use std::time::Duration;

use anyhow::bail;
use serde_json::{Map, Value};

use arqon_protocol::Status;
use arqon_sdk::{Client, ConnectOptions, SdkError};

use crate::output::{Style, frame_line, pretty_json, python_json};

/// How to reach the bus.
#[derive(Debug, clap::Args)]
pub(crate) struct WsArgs {
    /// The edge's WebSocket URL.
    #[arg(long, env = "ARQONBUS_WS_URL", default_value = "ws://127.0.0.1:9100")]
    ws_url: String,
    /// A token, sent as `Authorization: Bearer <jwt>`.
    #[arg(long, env = "ARQONBUS_AUTH_JWT", hide_env_values = true)]
    jwt: Option<String>,
    /// An extra request header, `Key:Value` (repeatable).
    #[arg(long = "header", value_name = "KEY:VALUE")]
    headers: Vec<String>,
    /// Bounds the connection and each wait for an answer or a frame.
    #[arg(long, default_value_t = 5.0)]
    timeout_seconds: f64,
}

impl WsArgs {
    fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_seconds.max(0.001))
    }

    async fn connect(&self) -> anyhow::Result<Client> {
        let headers = self
            .headers
            .iter()
            .map(|h| parse_header(h))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let options = ConnectOptions {
            token: self.jwt.clone(),
            headers,
            connect_timeout: self.timeout(),
            request_timeout: self.timeout(),
        };
        Ok(Client::connect(&self.ws_url, options).await?)
    }
}

/// `Key:Value` split on the first `:`, both sides trimmed (the original's rules).
pub(crate) fn parse_header(item: &str) -> anyhow::Result<(String, String)> {
    let Some((key, value)) = item.split_once(':') else {
        bail!("Invalid header format '{item}', expected 'Key:Value'");
    };
    let key = key.trim();
    if key.is_empty() {
        bail!("Invalid header '{item}': header key cannot be empty");
    }
    Ok((key.to_owned(), value.trim().to_owned()))
}

/// `room:channel`.
fn topic(target: &str) -> anyhow::Result<(&str, &str)> {
    match target.split_once(':') {
        Some((room, channel)) if !room.is_empty() && !channel.is_empty() => Ok((room, channel)),
        _ => bail!("'{target}' is not room:channel (e.g. science:general)"),
    }
}

fn object(text: &str, what: &str) -> anyhow::Result<Map<String, Value>> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        _ => bail!("{what} must be a JSON object"),
    }
}

fn to_value(envelope: &arqon_protocol::Envelope) -> Value {
    serde_json::from_str(&envelope.to_json()).unwrap_or(Value::Null)
}

#[derive(Debug, clap::Args)]
pub(crate) struct TailArgs {
    #[command(flatten)]
    ws: WsArgs,
    /// Frames to print (the welcome is the first).
    #[arg(long, default_value_t = 1)]
    limit: usize,
    /// A JSON object to send once after connecting.
    #[arg(long)]
    send: Option<String>,
    /// Print each frame as JSON.
    #[arg(long)]
    raw: bool,
}

/// Prints the welcome and the next frames, as the original's `tail`.
pub(crate) async fn tail(args: TailArgs) -> anyhow::Result<()> {
    let send = match &args.send {
        Some(text) => Some(object(text, "--send payload")?),
        None => None,
    };
    let client = args.ws.connect().await?;
    if let Some(message) = send {
        client.send_text(Value::Object(message).to_string()).await?;
    }
    let style = Style::detect();
    let print = |frame: &Value| {
        if args.raw {
            println!("{}", python_json(frame));
        } else {
            println!("{}", frame_line(frame, style));
        }
    };
    if args.limit > 0 {
        print(&to_value(client.welcome()));
    }
    for _ in 1..args.limit {
        let frame = client.recv(args.ws.timeout()).await?;
        print(&to_value(&frame));
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub(crate) struct PublishArgs {
    #[command(flatten)]
    ws: WsArgs,
    /// `room:channel`.
    target: String,
    /// The payload, a JSON object (e.g. '{"content":"hello"}').
    payload: String,
    #[arg(long)]
    json: bool,
}

pub(crate) async fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let (room, channel) = topic(&args.target)?;
    let payload = object(&args.payload, "the payload")?;
    let client = args.ws.connect().await?;
    let id = client
        .publish(room, channel, Value::Object(payload))
        .await?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "id": id, "room": room, "channel": channel })
        );
    } else {
        println!("published {id} to {room}:{channel}");
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub(crate) struct JoinArgs {
    #[command(flatten)]
    ws: WsArgs,
    /// `room:channel`.
    target: String,
    /// The id of the last message seen: what came after it is delivered first.
    #[arg(long)]
    since: Option<String>,
    /// Stop after this many messages (default: run until interrupted).
    #[arg(long)]
    limit: Option<usize>,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn join(args: JoinArgs) -> anyhow::Result<()> {
    let (room, channel) = topic(&args.target)?;
    let client = args.ws.connect().await?;
    let mut join = Map::new();
    join.insert("room".into(), Value::from(room));
    join.insert("channel".into(), Value::from(channel));
    if let Some(since) = &args.since {
        join.insert("since_id".into(), Value::from(since.as_str()));
    }
    let response = client.command("join_channel", join).await?;
    ensure_success(&response)?;
    let data = response.payload.get("data").unwrap_or(Value::Null);
    let style = Style::detect();
    if args.since.is_some() && !args.json {
        match data["recovered"].as_bool() {
            Some(true) => eprintln!("recovered {} missed messages", data["recovered_count"]),
            _ => eprintln!(
                "{}",
                style.red(
                    "could not recover what was missed (no longer in history): use `arqon history`"
                )
            ),
        }
    } else if !args.json {
        eprintln!("joined {room}:{channel}; waiting for messages (Ctrl-C to stop)");
    }
    let mut seen = 0;
    while args.limit.is_none_or(|limit| seen < limit) {
        let frame = match client.recv(Duration::from_secs(3600)).await {
            Ok(frame) => frame,
            Err(SdkError::Timeout) => continue,
            Err(e) => return Err(e.into()),
        };
        let value = to_value(&frame);
        if args.json {
            println!("{value}");
        } else {
            println!("{}", frame_line(&value, style));
        }
        seen += 1;
    }
    Ok(())
}

fn ensure_success(response: &arqon_protocol::Envelope) -> anyhow::Result<()> {
    if response.status == Some(Status::Success) {
        return Ok(());
    }
    let message = response
        .payload
        .get("message")
        .and_then(|m| m.as_str().map(str::to_owned))
        .unwrap_or_default();
    bail!(
        "{}: {message}",
        response.error_code.as_deref().unwrap_or("ERROR")
    )
}

#[derive(Debug, clap::Args)]
pub(crate) struct CommandArgs {
    #[command(flatten)]
    ws: WsArgs,
    /// The command, e.g. `status` or `op.store.get`.
    name: String,
    /// Its arguments, a JSON object.
    #[arg(long, default_value = "{}")]
    args: String,
    /// The whole response envelope.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn command(args: CommandArgs) -> anyhow::Result<()> {
    let arguments = object(&args.args, "--args")?;
    let client = args.ws.connect().await?;
    let response = client.command(&args.name, arguments).await?;
    print_response(&response, args.json)
}

/// A command's response: `data` as JSON (or the whole envelope); an error exits 1.
fn print_response(response: &arqon_protocol::Envelope, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", pretty_json(&to_value(response)));
    } else if response.status == Some(Status::Success) {
        let style = Style::detect();
        if let Some(message) = response
            .payload
            .get("message")
            .and_then(|m| m.as_str().map(str::to_owned))
        {
            eprintln!("{}", style.green(&message));
        }
        println!(
            "{}",
            pretty_json(&response.payload.get("data").unwrap_or(Value::Null))
        );
    }
    ensure_success(response)
}

#[derive(Debug, clap::Args)]
pub(crate) struct HistoryArgs {
    #[command(flatten)]
    ws: WsArgs,
    /// `room:channel`.
    target: String,
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// ISO 8601: messages stored at or after it.
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    json: bool,
}

pub(crate) async fn history(args: HistoryArgs) -> anyhow::Result<()> {
    let (room, channel) = topic(&args.target)?;
    let mut query = Map::new();
    query.insert("room".into(), Value::from(room));
    query.insert("channel".into(), Value::from(channel));
    query.insert("limit".into(), Value::from(args.limit));
    if let Some(since) = &args.since {
        query.insert("since".into(), Value::from(since.as_str()));
    }
    let client = args.ws.connect().await?;
    let response = client.command("history", query).await?;
    if args.json {
        return print_response(&response, true);
    }
    ensure_success(&response)?;
    let data = response.payload.get("data").unwrap_or(Value::Null);
    for line in history_lines(&data, Style::detect()) {
        println!("{line}");
    }
    eprintln!("epoch {}, {} stored", data["epoch"], data["total_messages"]);
    Ok(())
}

/// One line per stored message of a `history` reply. The stored entries do not repeat
/// their room and channel (the reply names them once), so they are taken from the reply.
fn history_lines(data: &Value, style: Style) -> Vec<String> {
    data["history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|message| {
            let mut frame = message.clone();
            if let Some(fields) = frame.as_object_mut() {
                fields.insert("room".into(), data["room_id"].clone());
                fields.insert("channel".into(), data["channel_id"].clone());
            }
            format!(
                "{} {} {}",
                style.dim(&format!("#{}", message["offset"])),
                frame_line(&frame, style),
                style.dim(message["message_id"].as_str().unwrap_or_default())
            )
        })
        .collect()
}

#[derive(Debug, clap::Args)]
pub(crate) struct ChannelsArgs {
    #[command(flatten)]
    ws: WsArgs,
    room: String,
    #[arg(long)]
    json: bool,
}

pub(crate) async fn channels(args: ChannelsArgs) -> anyhow::Result<()> {
    let mut query = Map::new();
    query.insert("room".into(), Value::from(args.room.as_str()));
    let client = args.ws.connect().await?;
    let response = client.command("list_channels", query).await?;
    if args.json {
        return print_response(&response, true);
    }
    ensure_success(&response)?;
    let data = response.payload.get("data").unwrap_or(Value::Null);
    for line in channel_table(&data, Style::detect()) {
        println!("{line}");
    }
    Ok(())
}

/// The channels of a `list_channels` reply as a table under its header. Every cell is
/// text before it is padded: a JSON value ignores a width when displayed.
fn channel_table(data: &Value, style: Style) -> Vec<String> {
    let row =
        |name: &str, members: &str, activity: &str| format!("{name:<24} {members:>8}  {activity}");
    let mut lines = vec![style.bold(&row("CHANNEL", "MEMBERS", "LAST ACTIVITY"))];
    for channel in data["channels"].as_array().into_iter().flatten() {
        lines.push(row(
            channel["name"].as_str().unwrap_or_default(),
            &channel["member_count"]
                .as_u64()
                .map_or("-".into(), |n| n.to_string()),
            channel["last_activity"].as_str().unwrap_or("-"),
        ));
    }
    lines
}

/// Why an SDK error is worth a hint.
pub(crate) fn hint(error: &anyhow::Error) -> Option<&'static str> {
    match error.downcast_ref::<SdkError>()? {
        SdkError::Connect { reason, .. } if reason.contains("401") => Some(
            "the bus refused the token: pass --jwt (or ARQONBUS_AUTH_JWT); `arqon token` mints one",
        ),
        SdkError::Connect { .. } => Some("is the bus running? check --ws-url (or ARQONBUS_WS_URL)"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_parsed_as_the_original_parsed_them() {
        assert_eq!(
            parse_header("X-Trace: abc:def ").unwrap(),
            ("X-Trace".to_owned(), "abc:def".to_owned())
        );
        assert_eq!(
            parse_header("A:1").unwrap(),
            ("A".to_owned(), "1".to_owned())
        );
        assert_eq!(
            parse_header("not-a-header").unwrap_err().to_string(),
            "Invalid header format 'not-a-header', expected 'Key:Value'"
        );
        assert_eq!(
            parse_header(" :x").unwrap_err().to_string(),
            "Invalid header ' :x': header key cannot be empty"
        );
    }

    #[test]
    fn history_lines_name_the_room_and_channel() {
        let data = serde_json::json!({
            "room_id": "lab", "channel_id": "notes",
            "history": [{"offset": 7, "message_id": "m1", "type": "message",
                         "timestamp": "t", "sender": "s", "payload": {"content": "hi"}}],
        });
        let lines = history_lines(&data, Style::plain());
        assert_eq!(
            lines,
            [r#"#7 t type=message sender=s room=lab channel=notes payload={"content": "hi"} m1"#]
        );
    }

    #[test]
    fn the_channel_table_lines_up_under_its_header() {
        let data = serde_json::json!({"channels": [
            {"name": "notes", "member_count": 3, "last_activity": "2026-12-04T10:00:00Z"},
            {"name": "a-much-longer-name", "member_count": 12345},
        ]});
        let lines = channel_table(&data, Style::plain());
        assert_eq!(
            lines[0],
            format!("{:<24} {:>8}  LAST ACTIVITY", "CHANNEL", "MEMBERS")
        );
        assert_eq!(
            lines[1],
            format!("{:<24} {:>8}  2026-12-04T10:00:00Z", "notes", "3")
        );
        assert_eq!(
            lines[2],
            format!("{:<24} {:>8}  -", "a-much-longer-name", "12345")
        );
        // The counts end where the header's MEMBERS ends (column 33).
        for (line, cell) in lines.iter().zip(["MEMBERS", "3", "12345"]) {
            assert_eq!(line[25..33].trim_start(), cell, "{lines:#?}");
        }
    }

    #[test]
    fn targets_are_room_and_channel() {
        assert_eq!(topic("science:general").unwrap(), ("science", "general"));
        for bad in ["science", ":general", "science:"] {
            assert!(topic(bad).is_err(), "{bad}");
        }
    }
}
