use super::*;
use serde_json::json;

const A: Arg = arg("a", false, "");
const ROOM: Arg = arg("room", true, "");
const CHANNEL: Arg = arg("channel", true, "");
const NAME: Arg = arg("name", true, "");

fn map(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

/// Reads `a: value` with `read`, as a family whose refusals are prefixed.
fn with<T>(
    value: Value,
    read: impl Fn(&Reader<'_>) -> Result<T, CommandReply>,
) -> Result<T, String> {
    let args = map(json!({ "a": value }));
    let reader = Reader::new(&args, Family::Channel);
    read(&reader).map_err(|reply| {
        assert_eq!(reply.error_code, Some(ErrorCode::ValidationError));
        reply.message
    })
}

fn refusal(detail: &str) -> Result<(), String> {
    Err(format!("Validation error: {detail}"))
}

#[test]
fn absent_and_null_are_alike() {
    let args = map(json!({"a": null}));
    for args in [&args, &Map::new()] {
        let r = Reader::new(args, Family::Store);
        assert_eq!(r.string(&A).unwrap(), None);
        assert_eq!(r.text(&A).unwrap(), None);
        assert_eq!(r.any_text(&A), None);
        assert_eq!(r.json(&A), None);
        assert_eq!(r.object(&A).unwrap(), None);
        assert_eq!(r.number(&A).unwrap(), None);
        assert_eq!(r.integer(&A).unwrap(), None);
        assert_eq!(r.count(&A).unwrap(), None);
        assert_eq!(r.limit(&A, 7, 9).unwrap(), 7);
        assert!(!r.flag(&A).unwrap());
        assert!(!r.truthy(&A).unwrap());
        assert_eq!(r.timestamp(&A).unwrap(), None);
    }
}

#[test]
fn strings_are_strings() {
    let string = |v: Value| with(v, |r| r.string(&A).map(|s| s.map(str::to_owned)));
    assert_eq!(string(json!(" x ")), Ok(Some(" x ".into())));
    assert_eq!(string(json!("")), Ok(None));
    for other in [json!(5), json!(true), json!({}), json!([])] {
        assert_eq!(string(other).map(drop), refusal("'a' must be a string"));
    }
}

#[test]
fn text_is_the_originals_str() {
    let text = |v: Value| with(v, |r| r.text(&A));
    assert_eq!(text(json!(" x ")), Ok(Some(" x ".into())));
    assert_eq!(text(json!("")), Ok(Some(String::new())));
    assert_eq!(text(json!(42)), Ok(Some("42".into())));
    assert_eq!(text(json!(1.5)), Ok(Some("1.5".into())));
    assert_eq!(text(json!(false)), Ok(Some("false".into())));
    for other in [json!({"k": 1}), json!(["x"])] {
        assert_eq!(text(other).map(drop), refusal("'a' must be a string"));
    }
    let any = |v: Value| with(v, |r| Ok(r.any_text(&A)));
    assert_eq!(any(json!(" x ")), Ok(Some(" x ".into())));
    assert_eq!(any(json!(3)), Ok(Some("3".into())));
    assert_eq!(any(json!({"k": [1]})), Ok(Some(r#"{"k":[1]}"#.into())));
    let json = |v: Value| with(v, |r| Ok(r.json(&A)));
    assert_eq!(json(json!("x")), Ok(Some(r#""x""#.into())));
    assert_eq!(json(json!({"k": 1})), Ok(Some(r#"{"k":1}"#.into())));
}

#[test]
fn objects_are_objects() {
    let object = |v: Value| with(v, |r| r.object(&A).map(|o| o.cloned()));
    assert_eq!(object(json!({"k": 1})), Ok(Some(map(json!({"k": 1})))));
    for other in [json!("k: 1"), json!([]), json!(3)] {
        assert_eq!(object(other).map(drop), refusal("'a' must be an object"));
    }
}

#[test]
fn numbers_may_come_as_text() {
    let number = |v: Value| with(v, |r| r.number(&A));
    assert_eq!(number(json!(1.5)), Ok(Some(1.5)));
    assert_eq!(number(json!(-2)), Ok(Some(-2.0)));
    assert_eq!(number(json!(" 0.5 ")), Ok(Some(0.5)));
    assert_eq!(number(json!("3")), Ok(Some(3.0)));
    assert_eq!(
        number(json!("soon")).map(drop),
        refusal("'a' must be a number, not 'soon'")
    );
    for other in [json!(true), json!([1]), json!({})] {
        assert_eq!(number(other).map(drop), refusal("'a' must be a number"));
    }
}

#[test]
fn integers_may_come_as_text() {
    let integer = |v: Value| with(v, |r| r.integer(&A));
    assert_eq!(integer(json!(7)), Ok(Some(7)));
    assert_eq!(integer(json!(-3)), Ok(Some(-3)));
    assert_eq!(integer(json!(4.0)), Ok(Some(4)));
    assert_eq!(integer(json!(" 12 ")), Ok(Some(12)));
    assert_eq!(integer(json!(u64::MAX)), Ok(Some(i64::MAX)));
    assert_eq!(integer(json!(-1e300)), Ok(Some(i64::MIN)));
    assert_eq!(
        integer(json!(2.5)).map(drop),
        refusal("'a' must be an integer, not '2.5'")
    );
    assert_eq!(
        integer(json!("many")).map(drop),
        refusal("'a' must be an integer, not 'many'")
    );
    assert_eq!(
        integer(json!("2.0")).map(drop),
        refusal("'a' must be an integer, not '2.0'")
    );
    for other in [json!(true), json!([1])] {
        assert_eq!(integer(other).map(drop), refusal("'a' must be an integer"));
    }
}

#[test]
fn counts_and_limits_are_json_integers() {
    let count = |v: Value| with(v, |r| r.count(&A));
    assert_eq!(count(json!(0)), Ok(Some(0)));
    assert_eq!(count(json!(9)), Ok(Some(9)));
    for other in [json!(-1), json!(1.5), json!("9"), json!(true)] {
        assert_eq!(
            count(other).map(drop),
            refusal("'a' must be a non-negative integer")
        );
    }
    let limit = |v: Value| with(v, |r| r.limit(&A, 50, 1000));
    assert_eq!(limit(json!(1)), Ok(1));
    assert_eq!(limit(json!(1000)), Ok(1000));
    for other in [json!(0), json!(1001), json!("5"), json!(-1), json!(2.5)] {
        assert_eq!(
            limit(other).map(drop),
            refusal("'a' must be an integer from 1 to 1000")
        );
    }
}

#[test]
fn flags_are_booleans_and_truthy_reads_words() {
    let flag = |v: Value| with(v, |r| r.flag(&A));
    assert_eq!(flag(json!(true)), Ok(true));
    assert_eq!(flag(json!(false)), Ok(false));
    for other in [json!("yes"), json!(1), json!([true])] {
        assert_eq!(flag(other).map(drop), refusal("'a' must be a boolean"));
    }
    let truthy = |v: Value| with(v, |r| r.truthy(&A));
    for yes in [
        json!(true),
        json!(1),
        json!(0.5),
        json!("yes"),
        json!(" ON "),
        json!("1"),
        json!("True"),
    ] {
        assert_eq!(truthy(yes.clone()), Ok(true), "{yes}");
    }
    for no in [
        json!(false),
        json!(0),
        json!("no"),
        json!("off"),
        json!("0"),
        json!("FALSE"),
    ] {
        assert_eq!(truthy(no.clone()), Ok(false), "{no}");
    }
    for other in [json!("maybe"), json!([true]), json!({})] {
        assert_eq!(truthy(other).map(drop), refusal("'a' must be a boolean"));
    }
}

#[test]
fn timestamps_are_iso_8601() {
    let args = map(
        json!({"since": "2026-01-01T00:00:00Z", "naive": "2026-01-01T00:00:00", "until": "yesterday", "n": 5}),
    );
    let r = Reader::new(&args, Family::Channel);
    let at = |name| r.timestamp(&arg(name, false, ""));
    assert_eq!(at("since").unwrap(), at("naive").unwrap());
    assert!(at("since").unwrap().is_some());
    for bad in ["until", "n"] {
        let reply = at(bad).unwrap_err();
        assert_eq!(reply.error_code, Some(ErrorCode::InvalidTimestamp));
        assert_eq!(reply.message, format!("Invalid '{bad}' timestamp format"));
    }
}

#[test]
fn refusals_are_worded_as_the_family_words_them() {
    let args = map(json!({"a": {}}));
    assert_eq!(
        Reader::new(&args, Family::Webhook)
            .text(&A)
            .unwrap_err()
            .message,
        "Validation error: 'a' must be a string"
    );
    for bare in [Family::Store, Family::Cron, Family::Omega] {
        assert_eq!(
            Reader::new(&args, bare).text(&A).unwrap_err().message,
            "'a' must be a string"
        );
    }
}

#[test]
fn topics_name_every_missing_or_bad_part() {
    let topic = |v: Value, channel: &[&Arg]| {
        let args = map(v);
        let r = Reader::new(&args, Family::Channel);
        r.topic(&ROOM, channel)
            .map(|t| t.to_string())
            .map_err(|e| e.message)
    };
    assert_eq!(
        topic(
            json!({"room": "science", "channel": "general"}),
            &[&CHANNEL]
        )
        .unwrap(),
        "science:general"
    );
    assert_eq!(
        topic(
            json!({"room": "science", "name": "lab"}),
            &[&CHANNEL, &NAME]
        )
        .unwrap(),
        "science:lab"
    );
    let missing = |detail: &str| {
        Err(format!(
            "Validation error: Missing required arguments: {detail}"
        ))
    };
    assert_eq!(
        topic(json!({"channel": ""}), &[&CHANNEL]),
        missing("room, channel")
    );
    assert_eq!(topic(json!({"room": "r"}), &[&CHANNEL]), missing("channel"));
    assert_eq!(topic(json!({"channel": "c"}), &[&CHANNEL]), missing("room"));
    assert_eq!(
        topic(json!({"room": 5, "channel": "c"}), &[&CHANNEL]),
        Err("Validation error: 'room' must be a string".into())
    );
    let bad = topic(json!({"room": "a.b", "channel": "c"}), &[&CHANNEL]).unwrap_err();
    assert!(
        bad.starts_with("Validation error: Invalid room name 'a.b'"),
        "{bad}"
    );
    let args = map(json!({"room": "a.b"}));
    let r = Reader::new(&args, Family::Channel);
    assert!(
        r.room(&ROOM)
            .unwrap_err()
            .message
            .starts_with("Validation error: Invalid room name")
    );
    assert_eq!(
        Reader::new(&Map::new(), Family::Channel)
            .room(&ROOM)
            .unwrap_err()
            .message,
        "Validation error: Missing required arguments: room"
    );
}
