//! The event stream of `GET apps/{app}/logs?follow=1`: server-sent events
//! (`text/event-stream`), one per execution, whose `id` is the execution's
//! record id and whose `data` is the [`ExecutionRecord`](super::ExecutionRecord)
//! as JSON. A client that lost the stream asks again with the last id it
//! saw in the [`LAST_EVENT_ID`] header; the server first replays the
//! executions it still keeps that are newer. Lines starting with `:` are
//! comments (keep-alives, notes on skipped executions).
//!
//! [`event`] and [`comment`] write the stream; [`Parser`] reads it.

/// The request header that carries the id of the last event a client saw.
pub const LAST_EVENT_ID: &str = "last-event-id";

/// One event with an id and a one-line `data` field.
pub fn event(id: u64, data: &str) -> String {
    let mut out = format!("id: {id}\n");
    for line in data.lines() {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out
}

/// A comment line, which clients ignore.
pub fn comment(text: &str) -> String {
    format!(": {}\n\n", text.replace('\n', " "))
}

/// One event read from the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The last event id the stream set, at this event.
    pub id: Option<String>,
    /// The event's data lines, joined by `\n`.
    pub data: String,
}

/// Reads events from a stream that arrives in chunks of any size (lines
/// and UTF-8 characters may be split between chunks). Understands `data`
/// and `id`; ignores comments, `event`, `retry` and unknown fields.
#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    data: Option<String>,
    last_id: Option<String>,
}

impl Parser {
    /// A parser at the start of a stream.
    pub fn new() -> Parser {
        Parser::default()
    }

    /// The id of the last event seen, to resume from after a reconnect.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// Reads `chunk` and returns the events it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        for &b in chunk {
            if b != b'\n' {
                self.line.push(b);
                continue;
            }
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if let Some(event) = self.line_done(&String::from_utf8_lossy(&line)) {
                events.push(event);
            }
        }
        events
    }

    fn line_done(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            let data = self.data.take()?;
            return Some(Event {
                id: self.last_id.clone(),
                data,
            });
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            "id" if !value.contains('\0') => self.last_id = Some(value.to_string()),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_read_across_chunk_boundaries() {
        let stream = format!(
            "{}{}: keep-alive\n\n{}",
            event(7, "{\"a\":\"é\"}"),
            comment("3 executions\nskipped"),
            event(9, "two\nlines")
        );
        let bytes = stream.as_bytes();
        for split in 0..bytes.len() {
            let mut parser = Parser::new();
            let mut events = parser.feed(&bytes[..split]);
            events.extend(parser.feed(&bytes[split..]));
            assert_eq!(
                events,
                [
                    Event {
                        id: Some("7".into()),
                        data: "{\"a\":\"é\"}".into()
                    },
                    Event {
                        id: Some("9".into()),
                        data: "two\nlines".into()
                    },
                ],
                "split at {split}"
            );
            assert_eq!(parser.last_event_id(), Some("9"));
        }
    }

    #[test]
    fn crlf_fields_without_a_space_and_unknown_fields_are_understood() {
        let mut parser = Parser::new();
        let events = parser.feed(b"retry: 10\r\nevent: x\r\nid:4\r\ndata:x\r\n\r\nid: 5\n\n");
        assert_eq!(
            events,
            [Event {
                id: Some("4".into()),
                data: "x".into()
            }]
        );
        assert_eq!(
            parser.last_event_id(),
            Some("5"),
            "an id without data still counts"
        );
    }
}
