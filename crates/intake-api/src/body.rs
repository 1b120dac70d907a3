//! Reading a JSON request body: its `Content-Type` and `Content-Encoding`, the size limit
//! (applied to decompressed bytes, without ever holding more than the limit), and parsing.

use std::io::Read;
use std::time::Duration;

use actix_web::http::header;
use actix_web::web;
use actix_web::HttpRequest;
use futures_util::StreamExt;
use intake_domain::{ErrorCode, FieldError};
use serde_json::{Map, Value};

use crate::problem::ApiError;

/// The body's encoding, from `Content-Encoding`: the encodings a request body may come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(as = ContentEncoding, rename_all = "lowercase")]
pub enum Encoding {
    /// Not compressed.
    Identity,
    /// Gzip-compressed; the size limit applies after decompression.
    Gzip,
}

fn content_encoding(req: &HttpRequest) -> Result<Encoding, ApiError> {
    let Some(value) = req.headers().get(header::CONTENT_ENCODING) else {
        return Ok(Encoding::Identity);
    };
    let unsupported =
        || ApiError::UnsupportedContentEncoding(String::from_utf8_lossy(value.as_bytes()).into());
    let text = value.to_str().map_err(|_| unsupported())?.trim();
    if text.eq_ignore_ascii_case("identity") || text.is_empty() {
        Ok(Encoding::Identity)
    } else if text.eq_ignore_ascii_case("gzip") || text.eq_ignore_ascii_case("x-gzip") {
        Ok(Encoding::Gzip)
    } else {
        Err(unsupported())
    }
}

/// Accepts `application/json` and `application/<anything>+json`, with a UTF-8 charset if any.
fn require_json(req: &HttpRequest) -> Result<(), ApiError> {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return Err(ApiError::UnsupportedContentType("send Content-Type: application/json".into()));
    };
    let shown = String::from_utf8_lossy(value.as_bytes()).into_owned();
    let unsupported = || {
        ApiError::UnsupportedContentType(format!(
            "Content-Type {shown:?} is not supported; send application/json"
        ))
    };
    let mime: mime::Mime =
        value.to_str().ok().and_then(|t| t.parse().ok()).ok_or_else(unsupported)?;
    let is_json = mime.type_() == mime::APPLICATION
        && (mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON));
    let utf8 = mime.get_param(mime::CHARSET).is_none_or(|c| c == mime::UTF_8);
    if is_json && utf8 {
        Ok(())
    } else {
        Err(unsupported())
    }
}

/// How a body is read: its size limit (after decompression) and how long the client may take.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// The most bytes, after decompression.
    pub max_bytes: usize,
    /// The longest the whole body may take to arrive.
    pub timeout: Duration,
}

/// Reads the whole body, refusing it as soon as it is known to exceed the limit once
/// decompressed, or when it takes longer than the timeout to arrive (a stalled client cannot
/// hold a worker's request open for longer).
async fn read_limited(
    req: &HttpRequest,
    payload: web::Payload,
    limits: BodyLimits,
) -> Result<Vec<u8>, ApiError> {
    tokio::time::timeout(limits.timeout, read_all(req, payload, limits.max_bytes))
        .await
        .map_err(|_| ApiError::BodyTimeout(limits.timeout.as_millis() as u64))?
}

async fn read_all(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    let encoding = content_encoding(req)?;
    let too_large = || ApiError::PayloadTooLarge { limit };
    // A declared length over the limit is refused before a byte is read. Compressed bytes are
    // held to the same limit: gzip grows only a body that does not compress, by a few bytes.
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut raw = Vec::with_capacity(declared.map_or(8 * 1024, |n| n as usize));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::UnreadableBody(e.to_string()))?;
        if raw.len() + chunk.len() > limit {
            return Err(too_large());
        }
        raw.extend_from_slice(&chunk);
    }
    match encoding {
        Encoding::Identity => Ok(raw),
        // Inflating megabytes takes tens of milliseconds of CPU: a blocking thread does it, so
        // the worker keeps serving other connections meanwhile.
        Encoding::Gzip => web::block(move || gunzip_limited(&raw, limit))
            .await
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("inflating a body: {e}")))?,
    }
}

/// Decompresses at most `limit` bytes; a stream that would inflate past it is refused after
/// `limit + 1` bytes, whatever its full size (a gzip bomb costs no more than the limit).
fn gunzip_limited(compressed: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let decoder = flate2::read::MultiGzDecoder::new(compressed);
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(4).min(limit + 1));
    decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::InvalidBody(format!("the gzip body is corrupt: {e}")))?;
    if out.len() > limit {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    Ok(out)
}

/// Reads a JSON object body: checks the media type and encoding, applies the limit, then
/// parses.
pub async fn json_object(
    req: &HttpRequest,
    payload: web::Payload,
    limits: BodyLimits,
) -> Result<Map<String, Value>, ApiError> {
    require_json(req)?;
    let bytes = read_limited(req, payload, limits).await?;
    parse_object(&bytes)
}

/// Reads a JSON document of any kind, required to be there and to say it is JSON (a schema,
/// which may be `true` or `false`).
pub async fn json_document(
    req: &HttpRequest,
    payload: web::Payload,
    limits: BodyLimits,
) -> Result<Value, ApiError> {
    require_json(req)?;
    let bytes = read_limited(req, payload, limits).await?;
    let text = std::str::from_utf8(&bytes).map_err(|_| ApiError::InvalidUtf8)?;
    if text.trim().is_empty() {
        return Err(ApiError::InvalidJson("the body is empty".into()));
    }
    serde_json::from_str(text).map_err(|e| ApiError::InvalidJson(e.to_string()))
}

/// Reads a JSON body of any kind (an array, for a batch of CloudEvents); `None` when the body
/// is empty (a binary-mode CloudEvent without data).
pub async fn json_value(
    req: &HttpRequest,
    payload: web::Payload,
    limits: BodyLimits,
) -> Result<Option<Value>, ApiError> {
    // A binary-mode CloudEvent without Content-Type (no `datacontenttype`) carries JSON.
    if req.headers().contains_key(header::CONTENT_TYPE) {
        require_json(req)?;
    }
    let bytes = read_limited(req, payload, limits).await?;
    let text = std::str::from_utf8(&bytes).map_err(|_| ApiError::InvalidUtf8)?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(text).map(Some).map_err(|e| ApiError::InvalidJson(e.to_string()))
}

/// Parses bytes as a JSON object, telling invalid UTF-8, malformed JSON and other JSON values
/// apart.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ApiError::InvalidUtf8)?;
    if text.trim().is_empty() {
        return Err(ApiError::InvalidJson("the body is empty".into()));
    }
    if text.trim_start().starts_with('{') {
        // An object's fields are read one by one, so that one given twice is named rather than
        // the last silently kept.
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let fields = serde::Deserializer::deserialize_map(&mut deserializer, UniqueFields)
            .and_then(|fields| deserializer.end().map(|()| fields))
            .map_err(|e| ApiError::InvalidJson(e.to_string()))?;
        return match fields {
            Ok(map) => Ok(map),
            Err(twice) => Err(ApiError::Validation(
                twice
                    .into_iter()
                    .map(|name| {
                        FieldError::new(
                            name.clone(),
                            ErrorCode::DuplicateField,
                            format!("{name} is given more than once; give each field once"),
                        )
                        .into()
                    })
                    .collect(),
            )),
        };
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ApiError::InvalidBody(format!(
            "the body must be a JSON object, not {}",
            intake_domain::event::json_type_name(&other)
        ))),
        Err(e) => Err(ApiError::InvalidJson(e.to_string())),
    }
}

/// Reads a JSON object's fields, or the names of those given more than once.
struct UniqueFields;

impl<'de> serde::de::Visitor<'de> for UniqueFields {
    type Value = Result<Map<String, Value>, Vec<String>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut access: A,
    ) -> Result<Self::Value, A::Error> {
        let mut fields = Map::new();
        let mut twice: Vec<String> = Vec::new();
        while let Some(name) = access.next_key::<String>()? {
            let value: Value = access.next_value()?;
            if fields.insert(name.clone(), value).is_some() && !twice.contains(&name) {
                twice.push(name);
            }
        }
        Ok(if twice.is_empty() { Ok(fields) } else { Err(twice) })
    }
}
