//! JSON from people and scripts to MessagePack for plugins, and back.

use serde_json::{Map, Number, Value as Json};

/// An integer literal in JSON text that MessagePack cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the integer {literal} does not fit in 64 bits (MessagePack integers are -2^63..2^64-1); send it as a string, or as a float such as 1.5e30 if losing precision is fine")]
pub struct WideInteger {
    /// The literal as written.
    pub literal: String,
}

/// Refuses integer literals beyond 64 bits in JSON `text`. `serde_json`
/// reads them as floats without a word, so `2^64` would reach a plugin as
/// 1.8446744073709552e19; only the text still shows what was meant. A
/// literal with a fraction or an exponent is a float by its writer's
/// choice and passes. Linear, no allocation unless it fails.
pub fn check_integers(text: &str) -> Result<(), WideInteger> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // Skip the string, escapes included.
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                i += 1;
                while i < bytes.len()
                    && matches!(bytes[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    i += 1;
                }
                let literal = &text[start..i];
                let integer = !literal.contains(['.', 'e', 'E']);
                if integer && literal.parse::<i64>().is_err() && literal.parse::<u64>().is_err() {
                    // Not a number at all is the JSON parser's to report.
                    if literal
                        .trim_start_matches('-')
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                        && literal.len() > 1
                    {
                        return Err(WideInteger {
                            literal: literal.to_owned(),
                        });
                    }
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Encodes JSON as a MessagePack document.
pub fn to_msgpack(json: &Json) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    rmp_serde::to_vec_named(json)
}

/// Why JSON text could not become MessagePack.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    /// The text is not JSON.
    #[error("not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Encoding failed.
    #[error("cannot encode as MessagePack: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
}

/// Encodes JSON text as a MessagePack document straight from the text,
/// with no `serde_json::Value` in between: a value tree costs about 16
/// times the text for an array of small numbers (32 bytes per element),
/// which let large control requests multiply the host's memory.
pub fn text_to_msgpack(text: &str) -> Result<Vec<u8>, TranscodeError> {
    let mut out = Vec::with_capacity(text.len() / 2 + 16);
    let mut de = serde_json::Deserializer::from_str(text);
    let mut ser = rmp_serde::Serializer::new(&mut out).with_struct_map();
    serde_transcode::transcode(&mut de, &mut ser).map_err(|e| {
        // The error may come from either side; both print the reason.
        TranscodeError::Json(serde::ser::Error::custom(e.to_string()))
    })?;
    de.end()?;
    Ok(out)
}

/// Decodes a MessagePack document into JSON. Binary becomes an array of
/// byte values, extension types `{"ext": type, "data": [...]}`, non-string
/// map keys their JSON text; nothing is dropped.
pub fn to_json(msgpack: &[u8]) -> Result<Json, rmpv::decode::Error> {
    let value = rmpv::decode::read_value(&mut &msgpack[..])?;
    Ok(convert(&value))
}

fn convert(v: &rmpv::Value) -> Json {
    use rmpv::Value as M;
    match v {
        M::Nil => Json::Null,
        M::Boolean(b) => Json::Bool(*b),
        M::Integer(i) => i
            .as_i64()
            .map(Json::from)
            .or_else(|| i.as_u64().map(Json::from))
            .unwrap_or(Json::Null),
        M::F32(f) => Number::from_f64(f64::from(*f)).map_or(Json::Null, Json::Number),
        M::F64(f) => Number::from_f64(*f).map_or(Json::Null, Json::Number),
        M::String(s) => Json::String(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        M::Binary(b) => Json::Array(b.iter().map(|x| Json::from(*x)).collect()),
        M::Array(items) => Json::Array(items.iter().map(convert).collect()),
        M::Map(entries) => {
            let mut map = Map::new();
            for (k, v) in entries {
                let key = match k {
                    M::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                    other => convert(other).to_string(),
                };
                map.insert(key, convert(v));
            }
            Json::Object(map)
        }
        M::Ext(t, data) => serde_json::json!({"ext": t, "data": data}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let j = serde_json::json!({"a": [1, -2, 3.5, "x", null, true], "b": {"c": 18446744073709551615u64}});
        let m = to_msgpack(&j).expect("encodes");
        assert_eq!(to_json(&m).expect("decodes"), j);
    }

    #[test]
    fn integers_beyond_64_bits_are_refused_floats_and_strings_are_not() {
        for ok in [
            r#"{"a": 18446744073709551615, "b": -9223372036854775808}"#,
            r#"[1e30, 1.5, -2.5E+40, 123456789012345678901234.0]"#,
            r#"{"id": "123456789012345678901234567890", "q": "a\"99999999999999999999"}"#,
            "-",
        ] {
            assert_eq!(check_integers(ok), Ok(()), "{ok}");
        }
        for (bad, literal) in [
            (r#"{"a": 18446744073709551616}"#, "18446744073709551616"),
            ("[-9223372036854775809]", "-9223372036854775809"),
            (
                "100000000000000000000000000000",
                "100000000000000000000000000000",
            ),
        ] {
            assert_eq!(
                check_integers(bad).map_err(|e| e.literal),
                Err(literal.to_owned())
            );
        }
    }

    #[test]
    fn text_transcodes_like_the_value_tree() {
        let text =
            r#"{"a": [1, -2, 3.5, "x", null, true], "b": {"c": 18446744073709551615}, "d": []}"#;
        let via_value =
            to_msgpack(&serde_json::from_str::<Json>(text).expect("json")).expect("encodes");
        assert_eq!(text_to_msgpack(text).expect("transcodes"), via_value);
        assert!(text_to_msgpack("[1,").is_err());
        assert!(text_to_msgpack("1 2").is_err());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(to_json(&[0x92, 0x01]).is_err());
        assert!(to_json(&[]).is_err());
    }
}
