//! Close frames (RFC 6455 §5.5.1, §7.4): which codes a client may send,
//! reading a client's close payload and making the server's.

use bytes::{BufMut, Bytes, BytesMut};

use super::Error;

/// A close frame's code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: u16,
    /// The reason, valid UTF-8.
    pub reason: String,
}

/// Whether a client may send `code` (§7.4.1, §7.4.2): the defined codes
/// that are meant to be sent (1000-1003, 1007-1011), and the ranges for
/// libraries and applications (3000-4999). 1004-1006 and 1015 are reserved
/// for local use and must never be on the wire; others are unassigned.
pub(crate) fn is_valid_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

/// Reads a client's close payload: nothing, or a code and a UTF-8 reason.
///
/// # Errors
///
/// [`Error::Protocol`] for a one-byte payload or a code a client may not
/// send; [`Error::Utf8`] for a reason that is not UTF-8.
pub(crate) fn parse(payload: &[u8]) -> Result<Option<CloseFrame>, Error> {
    let (code, reason) = match payload {
        [] => return Ok(None),
        [_] => return Err(Error::Protocol("close frame with a one-byte payload")),
        [high, low, reason @ ..] => (u16::from_be_bytes([*high, *low]), reason),
    };
    if !is_valid_code(code) {
        return Err(Error::Protocol("close frame with an invalid code"));
    }
    let reason = std::str::from_utf8(reason).map_err(|_| Error::Utf8)?;
    Ok(Some(CloseFrame {
        code,
        reason: reason.to_owned(),
    }))
}

/// The payload of a server close frame: `code` and as much of `reason` as
/// fits a control frame (123 bytes, cut at a character boundary).
pub(crate) fn payload(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = BytesMut::with_capacity(2 + end);
    payload.put_u16(code);
    payload.put_slice(&reason.as_bytes()[..end]);
    payload.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_a_client_may_send() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            assert!(is_valid_code(code), "{code}");
        }
        for code in [
            0, 999, 1004, 1005, 1006, 1012, 1015, 1016, 1100, 2000, 2999, 5000,
        ] {
            assert!(!is_valid_code(code), "{code}");
        }
    }

    #[test]
    fn close_payloads() {
        assert_eq!(parse(&[]).unwrap(), None);
        assert!(matches!(parse(&[3]), Err(Error::Protocol(_))));
        assert!(
            matches!(parse(&[0x03, 0xEC]), Err(Error::Protocol(_))),
            "1004"
        );
        assert!(matches!(parse(&[0x03, 0xE8, 0xFF]), Err(Error::Utf8)));
        let frame = parse(b"\x03\xe8bye").unwrap().unwrap();
        assert_eq!((frame.code, frame.reason.as_str()), (1000, "bye"));
        let long = payload(1000, &"é".repeat(100));
        assert!(long.len() <= 125);
        assert!(std::str::from_utf8(&long[2..]).is_ok());
        assert_eq!(&payload(1009, "big")[..], b"\x03\xf1big");
    }
}
