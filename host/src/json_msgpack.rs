//! JSON from people and scripts to MessagePack for plugins, and back.

use serde_json::{Map, Number, Value as Json};

/// Encodes JSON as a MessagePack document.
pub fn to_msgpack(json: &Json) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    rmp_serde::to_vec_named(json)
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
    fn garbage_is_an_error() {
        assert!(to_json(&[0x92, 0x01]).is_err());
        assert!(to_json(&[]).is_err());
    }
}
