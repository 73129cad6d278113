//! A length check in front of pgwire's decoder.
//!
//! pgwire 0.42.1 trusts a frontend message's length field: a `p` message
//! (password, SASL) whose length is below 4 panics in
//! `PasswordMessageFamily::decode_body` (`split_to(full_len - 4)`), found by
//! the `pg_startup` fuzz target, and any message may announce up to 1 GiB,
//! which pgwire then waits for and buffers. pgwire's message-processing
//! functions take the concrete `Framed<_, PgWireMessageServerCodec<_>>`, so
//! a wrapping `Decoder` cannot be used with them; instead [`next_message`]
//! replaces `Framed::next`: it fills the framed read buffer itself, checks
//! the header of the next frame with [`check_next`] and only then lets
//! pgwire's codec decode it.
//!
//! Framing, as pgwire applies it by connection state:
//! * before the startup message (startup, SSLRequest, GSSENCRequest,
//!   CancelRequest): a 4-byte big-endian length that includes itself, from
//!   8 to 10,000 bytes (PostgreSQL's `MAX_STARTUP_PACKET_LENGTH`);
//! * afterwards: a type byte, then a 4-byte big-endian length that includes
//!   itself and not the type byte: at least 4; at most 64 KiB while
//!   authenticating (PostgreSQL caps authentication tokens at 65,535 bytes)
//!   and the node's `max_message_bytes` (16 MiB by default, as CockroachDB's
//!   `sql.conn.max_read_buffer_message_size`) once logged in.
//!
//! A frame that breaks these rules is refused from its header, before the
//! rest is read: the message loop answers FATAL 08P01 and closes.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;

use pgwire::api::{ClientInfo, PgWireConnectionState};
use pgwire::error::PgWireError;
use pgwire::messages::PgWireFrontendMessage;
use pgwire::tokio::server::PgWireMessageServerCodec;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::codec::{Decoder, Framed};

/// Smallest startup-phase packet: length and protocol code.
pub(crate) const MIN_STARTUP_PACKET_BYTES: u32 = 8;
/// Largest startup-phase packet (PostgreSQL's and pgwire's limit).
pub(crate) const MAX_STARTUP_PACKET_BYTES: u32 = 10_000;
/// Smallest length of a typed message: the length field itself.
pub(crate) const MIN_MESSAGE_BYTES: u32 = 4;
/// Largest message before authentication has finished (password, SASL).
pub(crate) const MAX_AUTH_MESSAGE_BYTES: u32 = 65_536;
/// How much is read from the connection at a time.
const READ_CHUNK: usize = 8 * 1024;

/// How the next frame is framed and bounded, from the connection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Before the startup message: length-only packets.
    Startup,
    /// Authentication in progress: typed messages, bounded by
    /// [`MAX_AUTH_MESSAGE_BYTES`].
    Authentication,
    /// Logged in: typed messages, bounded by the node's `max_message_bytes`.
    Session,
}

impl Phase {
    /// The phase pgwire's codec decodes in for `state`.
    pub(crate) fn of(state: PgWireConnectionState) -> Phase {
        match state {
            PgWireConnectionState::AwaitingSslRequest | PgWireConnectionState::AwaitingStartup => Phase::Startup,
            PgWireConnectionState::AuthenticationInProgress => Phase::Authentication,
            _ => Phase::Session,
        }
    }
}

/// A message type byte, printed as `'Q'` or `0x00`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TypeByte(pub u8);

impl std::fmt::Display for TypeByte {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_ascii_graphic() {
            write!(f, "'{}'", self.0 as char)
        } else {
            write!(f, "0x{:02x}", self.0)
        }
    }
}

/// A frame refused from its header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    /// A startup-phase packet shorter than 8 or longer than 10,000 bytes.
    #[error("startup packet length {len} is outside {MIN_STARTUP_PACKET_BYTES}..={MAX_STARTUP_PACKET_BYTES}")]
    StartupLength {
        /// The length field.
        len: u32,
    },
    /// A typed message whose length field is below 4.
    #[error("message {kind} has length {len}, below the minimum of {MIN_MESSAGE_BYTES}")]
    TooShort {
        /// The type byte.
        kind: TypeByte,
        /// The length field.
        len: u32,
    },
    /// A typed message longer than the bound of its phase.
    #[error(
        "message {kind} of length {len} exceeds the maximum message size of {max} bytes{}",
        if *before_auth { " before authentication" } else { "" }
    )]
    TooLarge {
        /// The type byte.
        kind: TypeByte,
        /// The length field (read unsigned: a negative length is huge).
        len: u32,
        /// The bound.
        max: u32,
        /// Whether the authentication bound applied.
        before_auth: bool,
    },
}

/// Checks the header of the next frame in `buf` (the unread bytes of the
/// connection), if enough of it has arrived; `max_message_bytes` bounds
/// messages after login. `Ok` means: decode it (or wait for more bytes).
pub(crate) fn check_next(buf: &[u8], phase: Phase, max_message_bytes: usize) -> Result<(), FrameError> {
    let max_session = u32::try_from(max_message_bytes).unwrap_or(u32::MAX);
    match phase {
        Phase::Startup => {
            let Some(head) = buf.get(..4) else { return Ok(()) };
            let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            if (MIN_STARTUP_PACKET_BYTES..=MAX_STARTUP_PACKET_BYTES).contains(&len) {
                Ok(())
            } else {
                Err(FrameError::StartupLength { len })
            }
        }
        Phase::Authentication | Phase::Session => {
            let Some(head) = buf.get(..5) else { return Ok(()) };
            let kind = TypeByte(head[0]);
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
            let before_auth = phase == Phase::Authentication;
            let max = if before_auth {
                max_session.min(MAX_AUTH_MESSAGE_BYTES)
            } else {
                max_session
            };
            if len < MIN_MESSAGE_BYTES {
                Err(FrameError::TooShort { kind, len })
            } else if len > max {
                Err(FrameError::TooLarge {
                    kind,
                    len,
                    max,
                    before_auth,
                })
            } else {
                Ok(())
            }
        }
    }
}

/// The next frontend message of the connection, as `Framed::next` would
/// return it, with every frame checked by [`check_next`] before pgwire
/// decodes it. A refused frame is an error (`PgWireError::ApiError` holding
/// a [`FrameError`]); `None` at end of stream. Cancel-safe: bytes read are
/// always in the framed read buffer.
pub(crate) async fn next_message<S, ST>(
    socket: &mut Framed<S, PgWireMessageServerCodec<ST>>,
    max_message_bytes: usize,
) -> Option<Result<PgWireFrontendMessage, PgWireError>>
where
    S: AsyncRead + Unpin + 'static,
{
    loop {
        let phase = Phase::of(socket.state());
        if let Err(e) = check_next(socket.read_buffer(), phase, max_message_bytes) {
            return Some(Err(PgWireError::ApiError(Box::new(e))));
        }
        // The codec and the buffer are both inside `socket`: move the buffer
        // out for the call (no copy, no allocation) and back.
        let mut buf = std::mem::take(socket.read_buffer_mut());
        let decoded = socket.codec_mut().decode(&mut buf);
        *socket.read_buffer_mut() = buf;
        match decoded {
            Ok(Some(msg)) => return Some(Ok(msg)),
            Err(e) => return Some(Err(e)),
            Ok(None) => {}
        }
        let read = poll_fn(|cx| {
            let mut buf = std::mem::take(socket.read_buffer_mut());
            let start = buf.len();
            buf.resize(start + READ_CHUNK, 0);
            let mut rb = ReadBuf::new(&mut buf[start..]);
            let polled = Pin::new(socket.get_mut()).poll_read(cx, &mut rb);
            let n = match polled {
                Poll::Ready(Ok(())) => rb.filled().len(),
                _ => 0,
            };
            buf.truncate(start + n);
            *socket.read_buffer_mut() = buf;
            polled.map_ok(|()| n)
        })
        .await;
        match read {
            Ok(0) if socket.read_buffer().is_empty() => return None,
            Ok(0) => {
                return Some(Err(PgWireError::IoError(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed in the middle of a message",
                ))))
            }
            Ok(_) => {}
            Err(e) => return Some(Err(PgWireError::IoError(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 16 << 20;

    fn typed(kind: u8, len: u32) -> Vec<u8> {
        let mut v = vec![kind];
        v.extend_from_slice(&len.to_be_bytes());
        v
    }

    #[test]
    fn incomplete_headers_wait() {
        assert_eq!(check_next(&[], Phase::Startup, MAX), Ok(()));
        assert_eq!(check_next(&[0, 0, 0], Phase::Startup, MAX), Ok(()));
        assert_eq!(check_next(b"p\0\0\0", Phase::Authentication, MAX), Ok(()));
        assert_eq!(check_next(b"Q", Phase::Session, MAX), Ok(()));
    }

    #[test]
    fn startup_packets() {
        for len in [8u32, 19, 10_000] {
            assert_eq!(check_next(&len.to_be_bytes(), Phase::Startup, MAX), Ok(()), "{len}");
        }
        for len in [0u32, 4, 7, 10_001, 1 << 30, u32::MAX] {
            assert_eq!(
                check_next(&len.to_be_bytes(), Phase::Startup, MAX),
                Err(FrameError::StartupLength { len }),
                "{len}"
            );
        }
    }

    #[test]
    fn length_below_4_is_refused_in_every_typed_phase() {
        for phase in [Phase::Authentication, Phase::Session] {
            for len in 0..4 {
                let e = check_next(&typed(b'p', len), phase, MAX).unwrap_err();
                assert_eq!(
                    e,
                    FrameError::TooShort {
                        kind: TypeByte(b'p'),
                        len
                    }
                );
                assert!(e.to_string().contains(&format!("length {len}")), "{e}");
            }
            assert_eq!(check_next(&typed(b'S', 4), phase, MAX), Ok(()));
        }
    }

    #[test]
    fn bounds() {
        assert_eq!(check_next(&typed(b'Q', 16 << 20), Phase::Session, MAX), Ok(()));
        let e = check_next(&typed(b'Q', (16 << 20) + 1), Phase::Session, MAX).unwrap_err();
        assert_eq!(
            e.to_string(),
            "message 'Q' of length 16777217 exceeds the maximum message size of 16777216 bytes"
        );
        // A negative length field is huge when read unsigned.
        assert!(check_next(&typed(b'Q', 0xffff_fff0), Phase::Session, MAX).is_err());
        assert_eq!(check_next(&typed(b'p', 65_536), Phase::Authentication, MAX), Ok(()));
        let e = check_next(&typed(b'p', 65_537), Phase::Authentication, MAX).unwrap_err();
        assert!(e.to_string().ends_with("65536 bytes before authentication"), "{e}");
        // A node bound below 64 KiB applies before authentication too.
        assert!(check_next(&typed(b'p', 5_000), Phase::Authentication, 4_096).is_err());
        // usize bounds above u32 do not wrap.
        assert_eq!(check_next(&typed(b'Q', u32::MAX), Phase::Session, usize::MAX), Ok(()));
    }

    #[test]
    fn type_bytes_print() {
        assert_eq!(TypeByte(b'Q').to_string(), "'Q'");
        assert_eq!(TypeByte(0).to_string(), "0x00");
        assert_eq!(TypeByte(b' ').to_string(), "0x20");
    }

    #[test]
    fn phases() {
        assert_eq!(Phase::of(PgWireConnectionState::AwaitingStartup), Phase::Startup);
        assert_eq!(Phase::of(PgWireConnectionState::AwaitingSslRequest), Phase::Startup);
        assert_eq!(
            Phase::of(PgWireConnectionState::AuthenticationInProgress),
            Phase::Authentication
        );
        assert_eq!(Phase::of(PgWireConnectionState::ReadyForQuery), Phase::Session);
        assert_eq!(Phase::of(PgWireConnectionState::CopyInProgress(false)), Phase::Session);
    }
}
