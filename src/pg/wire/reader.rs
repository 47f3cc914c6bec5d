//! Backend messages from a byte stream: framed here with length checks (so garbage can neither
//! panic nor make the client allocate without bound), parsed by `postgres-protocol`.

use std::io::{self, Read};

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::{ErrorFields, Message};

use super::error::WireError;

/// The largest message accepted: PostgreSQL's own limit on a field (1 GiB). A length above it
/// is garbage, not a message to allocate for.
pub const MAX_MESSAGE_LEN: usize = 1 << 30;
/// How much is read at a time when the size of what follows is unknown. A login's answers
/// and a lookup's rows are a few hundred bytes; a longer message is read whole as its length
/// says. Small, because every open connection holds its buffer: 8 KiB took 80 MB of memory in
/// a 10,000-thread step.
const CHUNK: usize = 2 * 1024;
/// The most the buffer grows by ahead of the bytes that arrived: a huge claimed length costs
/// memory only as its bytes really come.
const MAX_GROWTH: usize = 1 << 20;

/// A buffer of bytes read but not yet parsed.
#[derive(Default)]
pub struct MessageReader {
    buf: BytesMut,
}

impl MessageReader {
    pub fn new() -> Self {
        MessageReader::default()
    }

    /// The next message from `src`. `step` names what the caller waits for, for a timeout's
    /// message.
    pub fn next<R: Read>(&mut self, src: &mut R, step: &'static str) -> Result<Message, WireError> {
        self.fill(src, 5, step)?;
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if !(4..=MAX_MESSAGE_LEN).contains(&len) {
            return Err(WireError::protocol(format!(
                "message '{}' claims a length of {len} bytes",
                self.buf[0].escape_ascii()
            )));
        }
        self.fill(src, len + 1, step)?;
        match Message::parse(&mut self.buf) {
            Ok(Some(message)) => Ok(message),
            Ok(None) => Err(WireError::protocol("incomplete message after framing")),
            Err(err) => Err(WireError::protocol(err.to_string())),
        }
    }

    /// Reads until the buffer holds at least `needed` bytes.
    fn fill<R: Read>(
        &mut self,
        src: &mut R,
        needed: usize,
        step: &'static str,
    ) -> Result<(), WireError> {
        while self.buf.len() < needed {
            let have = self.buf.len();
            let want = (needed - have).clamp(CHUNK, MAX_GROWTH);
            self.buf.resize(have + want, 0);
            let got = src.read(&mut self.buf[have..]);
            self.buf.truncate(have + *got.as_ref().unwrap_or(&0));
            match got {
                Ok(0) => return Err(WireError::Closed),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(io_error(err, step)),
            }
        }
        Ok(())
    }

    /// Whether bytes are waiting that the caller has not read (for SSLRequest's answer, after
    /// which nothing may be buffered in plain text).
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// An I/O error of a read or write: a socket timeout is the deadline passing.
pub fn io_error(err: io::Error, step: &'static str) -> WireError {
    match err.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => WireError::Timeout(step),
        io::ErrorKind::UnexpectedEof => WireError::Closed,
        _ => WireError::Io(err),
    }
}

/// An ErrorResponse as a server error: its SQLSTATE and message (malformed fields are a
/// protocol error, and bytes that are not UTF-8 are shown lossily, never a panic).
pub fn server_error(mut fields: ErrorFields<'_>) -> WireError {
    let (mut code, mut message) = (None, None);
    loop {
        match fields.next() {
            Ok(Some(field)) => {
                let value = String::from_utf8_lossy(field.value_bytes()).into_owned();
                match field.type_() {
                    b'C' => code = Some(value),
                    b'M' => message = Some(value),
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(err) => return WireError::protocol(format!("bad error response: {err}")),
        }
    }
    match code {
        Some(code) => WireError::Server {
            code,
            message: message.unwrap_or_default(),
        },
        None => WireError::protocol("error response without a SQLSTATE"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &[u8]) -> Result<Vec<Message>, WireError> {
        let mut src = bytes;
        let mut reader = MessageReader::new();
        let mut out = Vec::new();
        while !src.is_empty() || !reader.is_empty() {
            out.push(reader.next(&mut src, "reading")?);
        }
        Ok(out)
    }

    #[test]
    fn frames_and_parses_consecutive_messages() {
        let bytes = b"1\0\0\0\x042\0\0\0\x04Z\0\0\0\x05I";
        let messages = read_all(bytes).unwrap();
        assert!(matches!(messages[0], Message::ParseComplete));
        assert!(matches!(messages[1], Message::BindComplete));
        assert!(matches!(messages[2], Message::ReadyForQuery(_)));
    }

    #[test]
    fn bad_lengths_truncation_and_unknown_tags_are_errors() {
        let oversized = read_all(b"D\x7f\xff\xff\xff").err();
        assert!(
            matches!(oversized, Some(WireError::Protocol(_))),
            "{oversized:?}"
        );
        assert!(matches!(
            read_all(b"D\0\0\0\x02"),
            Err(WireError::Protocol(_))
        ));
        assert!(matches!(read_all(b"D\0\0\0\x09ab"), Err(WireError::Closed)));
        assert!(matches!(
            read_all(b"~\0\0\0\x04"),
            Err(WireError::Protocol(_))
        ));
    }

    #[test]
    fn error_response_gives_code_and_message() {
        let body = b"SERROR\0C53300\0Msorry, too many clients already\0\0";
        let mut bytes = vec![b'E'];
        bytes.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        bytes.extend_from_slice(body);
        let Message::ErrorResponse(err) = read_all(&bytes).unwrap().remove(0) else {
            panic!("not an error response");
        };
        let err = server_error(err.fields());
        assert_eq!(err.to_string(), "53300: sorry, too many clients already");
    }
}
