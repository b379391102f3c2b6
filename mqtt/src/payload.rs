//! MQTT payloads (bytes, JSON by convention) and bus payloads (one
//! MessagePack document), each way.

use crate::config::PayloadFormat;

/// Why a payload could not cross.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// Not JSON, under a JSON rule.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// Not UTF-8, under a text rule.
    #[error("not UTF-8 text")]
    NotText,
    /// The bus document does not decode (never from the host, which checks).
    #[error("not one MessagePack document: {0}")]
    NotMessagePack(String),
    /// The document has no JSON form (a map with non-string keys, say).
    #[error("has no JSON form: {0}")]
    NoJson(String),
}

/// An MQTT payload as a bus payload. An empty payload is nil (with retain:
/// "clear this topic's state", in MQTT and on the bus alike).
pub fn to_bus(format: PayloadFormat, bytes: &[u8]) -> Result<Vec<u8>, PayloadError> {
    let value = if bytes.is_empty() {
        rmpv::Value::Nil
    } else {
        match format {
            PayloadFormat::Json => {
                let json: serde_json::Value = serde_json::from_slice(bytes)
                    .map_err(|e| PayloadError::NotJson(e.to_string()))?;
                return rmp_serde::to_vec_named(&json)
                    .map_err(|e| PayloadError::NotJson(e.to_string()));
            }
            PayloadFormat::Text => std::str::from_utf8(bytes)
                .map_err(|_| PayloadError::NotText)?
                .into(),
            PayloadFormat::Bytes => rmpv::Value::Binary(bytes.to_vec()),
        }
    };
    let mut out = Vec::with_capacity(bytes.len() + 8);
    rmpv::encode::write_value(&mut out, &value)
        .map_err(|e| PayloadError::NotMessagePack(e.to_string()))?;
    Ok(out)
}

/// A bus payload as an MQTT payload. Under `text` a string goes as its
/// text and under `bytes` a bin as its bytes; anything else (and every
/// document under `json`) goes as JSON. Nil is the empty payload.
pub fn to_mqtt(format: PayloadFormat, msgpack: &[u8]) -> Result<Vec<u8>, PayloadError> {
    let value = rmpv::decode::read_value(&mut &msgpack[..])
        .map_err(|e| PayloadError::NotMessagePack(e.to_string()))?;
    match (format, value) {
        (_, rmpv::Value::Nil) => Ok(Vec::new()),
        (PayloadFormat::Text, rmpv::Value::String(s)) => Ok(s.into_bytes()),
        (PayloadFormat::Bytes, rmpv::Value::Binary(b)) => Ok(b),
        (_, value) => {
            let json = to_json(value)?;
            serde_json::to_vec(&json).map_err(|e| PayloadError::NoJson(e.to_string()))
        }
    }
}

/// A MessagePack value as JSON: bins as arrays of numbers, as the SDKs
/// write byte strings when they have to.
fn to_json(value: rmpv::Value) -> Result<serde_json::Value, PayloadError> {
    use rmpv::Value as M;
    use serde_json::Value as J;
    Ok(match value {
        M::Nil => J::Null,
        M::Boolean(b) => J::Bool(b),
        M::Integer(i) => match (i.as_i64(), i.as_u64()) {
            (Some(n), _) => J::from(n),
            (_, Some(n)) => J::from(n),
            _ => return Err(PayloadError::NoJson("an integer out of range".into())),
        },
        M::F32(f) => serde_json::Number::from_f64(f64::from(f))
            .map(J::Number)
            .ok_or_else(|| PayloadError::NoJson("a float that is not finite".into()))?,
        M::F64(f) => serde_json::Number::from_f64(f)
            .map(J::Number)
            .ok_or_else(|| PayloadError::NoJson("a float that is not finite".into()))?,
        M::String(s) => J::String(
            s.into_str()
                .ok_or_else(|| PayloadError::NoJson("a string that is not UTF-8".into()))?,
        ),
        M::Binary(b) => J::Array(b.into_iter().map(J::from).collect()),
        M::Array(items) => J::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?),
        M::Map(entries) => {
            let mut map = serde_json::Map::with_capacity(entries.len());
            for (k, v) in entries {
                let key = match k {
                    M::String(s) => s.into_str().ok_or_else(|| {
                        PayloadError::NoJson("a map key that is not UTF-8".into())
                    })?,
                    M::Integer(i) => i.to_string(),
                    other => {
                        return Err(PayloadError::NoJson(format!(
                            "a map key that is not a string: {other}"
                        )))
                    }
                };
                map.insert(key, to_json(v)?);
            }
            J::Object(map)
        }
        M::Ext(..) => return Err(PayloadError::NoJson("a MessagePack extension".into())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip() {
        let text =
            br#"{"state":"ON","brightness":254,"color":{"x":0.3,"y":0.4},"tags":[1,"a",null]}"#;
        let bus = to_bus(PayloadFormat::Json, text).expect("json");
        let back = to_mqtt(PayloadFormat::Json, &bus).expect("back");
        let a: serde_json::Value = serde_json::from_slice(text).expect("a");
        let b: serde_json::Value = serde_json::from_slice(&back).expect("b");
        assert_eq!(a, b);
    }

    #[test]
    fn formats_and_errors() {
        assert!(matches!(
            to_bus(PayloadFormat::Json, b"{not json"),
            Err(PayloadError::NotJson(_))
        ));
        assert!(matches!(
            to_bus(PayloadFormat::Text, &[0xff, 0xfe]),
            Err(PayloadError::NotText)
        ));
        let s = to_bus(PayloadFormat::Text, b"online").expect("text");
        assert_eq!(to_mqtt(PayloadFormat::Text, &s).expect("text"), b"online");
        assert_eq!(
            to_mqtt(PayloadFormat::Json, &s).expect("json"),
            b"\"online\""
        );
        let nil = to_bus(PayloadFormat::Json, b"").expect("empty");
        assert_eq!(nil, [0xc0]);
        assert!(to_mqtt(PayloadFormat::Json, &nil).expect("nil").is_empty());
        let raw = to_bus(PayloadFormat::Bytes, &[1, 2, 3]).expect("bytes");
        assert_eq!(
            to_mqtt(PayloadFormat::Bytes, &raw).expect("bytes"),
            [1, 2, 3]
        );
    }
}
