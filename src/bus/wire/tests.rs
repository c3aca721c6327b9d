//! The wire codec against the original's format and against bad input.

use proptest::prelude::*;
use serde_json::json;

use super::*;

#[test]
fn channels_of_the_original_parse() {
    let plain = Channel::parse("PUBSUB:user_created:user_agent").unwrap();
    assert_eq!(
        plain,
        Channel {
            prefix: "PUBSUB",
            name: "user_created",
            sender: "user_agent",
            request_id: None,
        }
    );
    let id = "0123456789abcdef0123456789abcdef";
    let request = format!("PUBSUB:get_stock:shop#{id}");
    let request = Channel::parse(&request).unwrap();
    assert_eq!(request.request_id, Some(id));
    assert!(!request.is_response());
    let answer = format!("PUBSUB:response:bus-1#{id}");
    let answer = Channel::parse(&answer).unwrap();
    assert!(answer.is_response());
    assert_eq!(answer.to_string(), format!("PUBSUB:response:bus-1#{id}"));
}

#[test]
fn malformed_channels_are_errors() {
    for bad in [
        "",
        "PUBSUB",
        "PUBSUB:user_created",
        "PUBSUB:user_created:a:b",
        "PUBSUB::sender",
        ":name:sender",
        "PUBSUB:name:",
        "PUBSUB:name:sender#",
        "PUBSUB:name:sender#a#b",
        "PUBSUB:name#x:sender",
    ] {
        assert!(
            matches!(Channel::parse(bad), Err(WireError::Channel { .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn parts_with_separators_cannot_be_encoded() {
    let channel = |sender| Channel {
        prefix: "PUBSUB",
        name: "user_created",
        sender,
        request_id: None,
    };
    assert_eq!(
        channel("agent").encode().unwrap(),
        "PUBSUB:user_created:agent"
    );
    for bad in ["a:b", "a#b", ""] {
        assert!(matches!(
            channel(bad).encode(),
            Err(WireError::Part { what: "sender", .. })
        ));
    }
    assert_eq!(pattern("PUBSUB", "user_created"), "PUBSUB:user_created:*");
    // Glob characters stand for themselves.
    assert_eq!(pattern("AC?", "note"), r"AC\?:note:*");
    assert_eq!(pattern("a*[b]", r"c\d"), r"a\*\[b\]:c\\d:*");
}

#[test]
fn payloads_of_the_original_decode() {
    // `json.dumps` output: spaced separators, \u escapes.
    let object = decode_payload(br#"{"user_id": 1, "name": "J\u00fcrgen"}"#, MAX_PAYLOAD).unwrap();
    assert_eq!(object["user_id"], json!(1));
    assert_eq!(object["name"], json!("Jürgen"));
    // Compact and raw UTF-8 too.
    let object = decode_payload("{\"name\":\"Jürgen\"}".as_bytes(), MAX_PAYLOAD).unwrap();
    assert_eq!(object["name"], json!("Jürgen"));
}

#[test]
fn bad_payloads_are_errors_not_panics() {
    let decode = |bytes: &[u8]| decode_payload(bytes, 64);
    assert_eq!(decode(b"\xff\xfe{}"), Err(WireError::NotUtf8));
    assert!(matches!(
        decode(b"{\"x\": NaN}"),
        Err(WireError::NotJson(_))
    ));
    assert!(matches!(
        decode(b"{\"x\": Infinity}"),
        Err(WireError::NotJson(_))
    ));
    assert!(matches!(decode(b"not json"), Err(WireError::NotJson(_))));
    assert_eq!(decode(b"[1, 2]"), Err(WireError::NotAnObject("array")));
    assert_eq!(decode(b"null"), Err(WireError::NotAnObject("null")));
    assert_eq!(
        decode(&[b' '; 65]),
        Err(WireError::Oversized {
            size: 65,
            limit: 64
        })
    );
}

/// A part that is allowed in a channel.
fn part() -> impl Strategy<Value = String> {
    "[^:#]{1,24}"
}

proptest! {
    #[test]
    fn parsing_any_channel_never_panics(channel in ".{0,80}") {
        let _ = Channel::parse(&channel);
    }

    #[test]
    fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_payload(&bytes, 128);
    }

    /// The Redis bus checks payloads without decoding them: it must accept
    /// exactly what the decoder accepts, and reject with the same error.
    #[test]
    fn checking_a_payload_agrees_with_decoding_it(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        prop_assert_eq!(check_payload(&bytes, 128), decode_payload(&bytes, 128).map(drop));
    }

    #[test]
    fn checking_json_like_text_agrees_with_decoding_it(text in r#"[ {}\[\]",:0-9a-zNa]{0,40}"#) {
        let bytes = text.as_bytes();
        prop_assert_eq!(check_payload(bytes, 128), decode_payload(bytes, 128).map(drop));
    }

    #[test]
    fn valid_channels_survive_encoding(
        prefix in part(),
        name in part(),
        sender in part(),
        id in proptest::option::of("[0-9a-f]{32}"),
    ) {
        let channel = Channel { prefix: &prefix, name: &name, sender: &sender, request_id: id.as_deref() };
        let encoded = channel.encode().unwrap();
        prop_assert_eq!(Channel::parse(&encoded).unwrap(), channel);
    }

    #[test]
    fn a_separator_inside_a_part_is_refused_or_misparsed_never_accepted_silently(
        prefix in part(),
        sender in part(),
        before in "[a-z]{1,8}",
        sep in "[:#]",
        after in "[a-z]{1,8}",
    ) {
        let name = format!("{before}{sep}{after}");
        let channel = Channel { prefix: &prefix, name: &name, sender: &sender, request_id: None };
        let refused = matches!(channel.encode(), Err(WireError::Part { .. }));
        prop_assert!(refused);
    }

    #[test]
    fn objects_survive_the_payload_codec(
        entries in proptest::collection::btree_map("[a-z_]{1,10}", any::<i64>(), 0..8)
    ) {
        let object: Map<String, Value> = entries.into_iter().map(|(k, v)| (k, json!(v))).collect();
        prop_assert_eq!(decode_payload(&encode_payload(&object), MAX_PAYLOAD).unwrap(), object);
    }
}
