//! The HTTP side: request bodies (gzip above a few KiB), the headers the client reads
//! (`Retry-After`, `RateLimit-Policy`) and the batch answer.

use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::Deserialize;

use crate::error::FieldError;

/// Bodies larger than this are sent gzip-compressed.
pub(crate) const GZIP_ABOVE: usize = 4 * 1024;

/// The most JSON one batch carries: below the server's default batch limit (5 MiB after
/// decompression), with room for the envelope.
pub(crate) const BATCH_BYTES: usize = 4 * 1024 * 1024;

/// `{"sent_at":…,"events":[…]}` from events already written as JSON.
pub(crate) fn batch_body<'a>(events: impl Iterator<Item = &'a str>, sent_at: &str) -> Vec<u8> {
    let mut body = String::with_capacity(1024);
    body.push_str("{\"sent_at\":\"");
    body.push_str(sent_at);
    body.push_str("\",\"events\":[");
    for (i, event) in events.enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(event);
    }
    body.push_str("]}");
    body.into_bytes()
}

/// The body as it travels, and whether it is gzip-compressed.
pub(crate) fn encode(body: Vec<u8>) -> (Vec<u8>, bool) {
    if body.len() <= GZIP_ABOVE {
        return (body, false);
    }
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    // Writing into memory cannot fail; should it, the body goes as it is.
    match encoder.write_all(&body).and_then(|()| encoder.finish()) {
        Ok(compressed) => (compressed, true),
        Err(_) => (body, false),
    }
}

/// `Retry-After` in whole seconds or as an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// The `q` of the `"events"` policy in `RateLimit-Policy` (`"events";q=200000;w=2`): the
/// token's burst, the most events one request can ever carry.
pub(crate) fn events_quota(headers: &HeaderMap) -> Option<usize> {
    let value = headers.get("ratelimit-policy")?.to_str().ok()?;
    value.split(',').find_map(|policy| {
        let mut parts = policy.split(';').map(str::trim);
        let name = parts.next()?.trim_matches('"');
        if name != "events" {
            return None;
        }
        parts.find_map(|param| param.strip_prefix("q=")?.parse::<usize>().ok())
    })
}

/// The answer to a batch: one result per item, in request order.
#[derive(Debug, Deserialize)]
pub(crate) struct BatchAnswer {
    pub(crate) results: Vec<ItemAnswer>,
    #[serde(default)]
    pub(crate) clock_skew_ms: Option<i64>,
}

/// One item's result.
#[derive(Debug, Deserialize)]
pub(crate) struct ItemAnswer {
    pub(crate) status: String,
    #[serde(default)]
    pub(crate) deduplicated: bool,
    #[serde(default)]
    pub(crate) errors: Vec<FieldError>,
    #[serde(default)]
    pub(crate) event_id: Option<String>,
}

impl ItemAnswer {
    pub(crate) fn is_ok(&self) -> bool {
        self.status == "ok"
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(name: &'static str, value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn a_batch_body_carries_sent_at_once_and_the_events_as_written() {
        let body = batch_body(["{\"a\":1}", "{\"b\":2}"].into_iter(), "2025-12-22T10:30:00.000Z");
        let value: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            value,
            serde_json::json!({"sent_at": "2025-12-22T10:30:00.000Z",
                               "events": [{"a": 1}, {"b": 2}]})
        );
    }

    #[test]
    fn bodies_above_a_few_kib_are_gzipped_and_small_ones_are_not() {
        let (small, gzipped) = encode(b"{}".to_vec());
        assert!(!gzipped);
        assert_eq!(small, b"{}");
        let large = vec![b'x'; GZIP_ABOVE + 1];
        let (compressed, gzipped) = encode(large.clone());
        assert!(gzipped && compressed.len() < large.len());
        let mut inflated = Vec::new();
        flate2::read::GzDecoder::new(&compressed[..]).read_to_end(&mut inflated).expect("gzip");
        assert_eq!(inflated, large);
    }

    #[test]
    fn retry_after_is_read_in_seconds_or_as_a_date() {
        let now = DateTime::parse_from_rfc3339("2025-12-22T10:30:00Z").expect("t").to_utc();
        assert_eq!(retry_after(&headers("retry-after", "3"), now), Some(Duration::from_secs(3)));
        let date = headers("retry-after", "Mon, 22 Dec 2025 10:30:05 GMT");
        assert_eq!(retry_after(&date, now), Some(Duration::from_secs(5)));
        assert_eq!(retry_after(&headers("retry-after", "soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn the_quota_is_the_q_of_the_events_policy() {
        let cases = [
            ("\"events\";q=200000;w=2", Some(200_000)),
            ("\"events\";w=2;q=10", Some(10)),
            ("\"requests\";q=5, \"events\";q=7;w=1", Some(7)),
            ("\"requests\";q=5", None),
            ("\"events\";q=many", None),
        ];
        for (value, quota) in cases {
            assert_eq!(events_quota(&headers("ratelimit-policy", value)), quota, "{value}");
        }
    }
}
