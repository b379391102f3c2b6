//! Keeps `docs/PROTOCOL.md` true: every hex example in it must decode,
//! and re-encode to exactly the same bytes.

fn bytes_of(block: &str) -> Vec<u8> {
    let hex = block.split("```").next().unwrap_or_default();
    hex.split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).expect("hex byte"))
        .collect()
}

#[test]
fn every_example_in_protocol_md_round_trips() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md");
    let doc = std::fs::read_to_string(path).expect("docs/PROTOCOL.md is readable");
    let mut messages = 0;
    for block in doc.split("```hex\n").skip(1) {
        let bytes = bytes_of(block);
        let message = super::decode(&bytes, usize::MAX).expect("example decodes");
        let again = super::encode(&message).expect("example encodes");
        assert_eq!(
            &again[..],
            &bytes[..],
            "example {message:?} re-encodes differently"
        );
        messages += 1;
    }
    assert_eq!(messages, 11, "one example per message kind");
    let mut bodies = 0;
    for block in doc.split("```hex-event-body\n").skip(1) {
        let bytes = bytes_of(block);
        let body = super::decode_event_body(&bytes, usize::MAX).expect("body decodes");
        let again = super::encode_event_body(&body).expect("body encodes");
        assert_eq!(&again[..], &bytes[..], "event body re-encodes differently");
        bodies += 1;
    }
    assert_eq!(bodies, 1, "one example of an event body");
}
