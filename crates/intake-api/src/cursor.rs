//! The feed cursor as clients see it: an opaque URL-safe string.
//!
//! It encodes a [`FeedPosition`] with a version byte and a check value (the first 8 bytes of a
//! SHA-256 over the rest), so a cursor that was cut, edited or made up is refused with a 400
//! rather than silently read from the wrong place. It is not a secret: a cursor only positions
//! a reader within its own tenant's feed, so forging one gains nothing.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use intake_domain::FeedPosition;
use sha2::{Digest, Sha256};

const VERSION: u8 = 1;
const PAYLOAD_LEN: usize = 1 + 8 + 8;
const CHECK_LEN: usize = 8;

fn check(payload: &[u8]) -> [u8; CHECK_LEN] {
    let digest = Sha256::new().chain_update(b"intake.cursor\0").chain_update(payload).finalize();
    let mut out = [0u8; CHECK_LEN];
    out.copy_from_slice(&digest[..CHECK_LEN]);
    out
}

/// The cursor for a position.
pub fn encode(position: FeedPosition) -> String {
    let mut bytes = Vec::with_capacity(PAYLOAD_LEN + CHECK_LEN);
    bytes.push(VERSION);
    bytes.extend_from_slice(&position.tx.to_be_bytes());
    bytes.extend_from_slice(&position.seq.to_be_bytes());
    let check = check(&bytes);
    bytes.extend_from_slice(&check);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The position of a cursor this API handed out; `None` for anything else.
pub fn decode(cursor: &str) -> Option<FeedPosition> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    if bytes.len() != PAYLOAD_LEN + CHECK_LEN || bytes[0] != VERSION {
        return None;
    }
    let (payload, given) = bytes.split_at(PAYLOAD_LEN);
    if check(payload) != given {
        return None;
    }
    let tx = u64::from_be_bytes(payload[1..9].try_into().ok()?);
    let seq = i64::from_be_bytes(payload[9..17].try_into().ok()?);
    Some(FeedPosition { tx, seq })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips() {
        for position in [
            FeedPosition::START,
            FeedPosition { tx: 1, seq: 1 },
            FeedPosition { tx: u64::MAX, seq: i64::MAX },
        ] {
            assert_eq!(decode(&encode(position)), Some(position), "{position:?}");
        }
    }

    #[test]
    fn an_altered_or_made_up_cursor_is_refused() {
        let good = encode(FeedPosition { tx: 1234, seq: 99 });
        for i in 0..good.len() {
            let mut altered: Vec<char> = good.chars().collect();
            altered[i] = if altered[i] == 'A' { 'B' } else { 'A' };
            let altered: String = altered.into_iter().collect();
            if altered != good {
                assert_eq!(decode(&altered), None, "altered at {i}: {altered}");
            }
        }
        for bad in ["", "abc", "!!!!", &good[..good.len() - 1], &format!("{good}A")] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
