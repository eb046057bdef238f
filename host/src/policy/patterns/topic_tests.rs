//! Examples of topic pattern parsing, matching, placeholders and covers().

use super::{TopicPattern, validate_topic};
use crate::policy::PatternError;

fn p(s: &str) -> TopicPattern {
    TopicPattern::parse(s).unwrap()
}

#[test]
fn valid_patterns_round_trip() {
    for s in [
        "a",
        "a/b/c",
        "+",
        "#",
        "a/#",
        "+/x",
        "a/+/b",
        "+/+/#",
        "sensors/+/temp",
        "dev/{device}/x",
        "dev-{device}",
        "a b/ü/$SYS",
        "{device}/{device}",
    ] {
        assert_eq!(p(s).to_string(), s);
        assert_eq!(s.parse::<TopicPattern>().unwrap(), p(s));
    }
}

#[test]
fn malformed_patterns_are_refused_with_a_reason() {
    use PatternError as E;
    let err = |s: &str| TopicPattern::parse(s).unwrap_err();
    assert!(matches!(err(""), E::Empty { .. }));
    for s in ["a//b", "/a", "a/", "/", "//", "#/"] {
        assert!(matches!(err(s), E::EmptyLevel { .. }), "{s}");
    }
    for s in ["#/a", "a/#/b", "#/#"] {
        assert!(matches!(err(s), E::HashNotLast { .. }), "{s}");
    }
    for s in ["a#", "a/b#", "#a", "a/##"] {
        assert!(matches!(err(s), E::HashInLevel { .. }), "{s}");
    }
    for s in ["a+/b", "a/+b", "++", "a/b+"] {
        assert!(matches!(err(s), E::PlusInLevel { .. }), "{s}");
    }
    for s in ["a/\0", "a\u{1}b", "a\nb", "a/\u{7f}"] {
        assert!(matches!(err(s), E::ControlChar { .. }), "{s:?}");
    }
    for s in ["{dev}", "a/{", "a}", "{device", "{{device}}", "x/{Device}"] {
        assert!(matches!(err(s), E::BadPlaceholder { .. }), "{s}");
    }
    assert!(matches!(err(&"a".repeat(257)), E::TooLong { len: 257, .. }));
    assert!(TopicPattern::parse(&"a".repeat(256)).is_ok());
    let levels = |n: usize| vec!["x"; n].join("/");
    assert!(TopicPattern::parse(&levels(32)).is_ok());
    assert!(matches!(
        err(&levels(33)),
        E::TooManyLevels { levels: 33, .. }
    ));
    assert_eq!(
        err("a+/b").to_string(),
        "topic pattern \"a+/b\": '+' must be a whole level (like \"a/+/b\", not \"a+/b\")"
    );
}

#[test]
fn topics() {
    for t in ["a", "a/b", "sensors/kitchen/temp", "$SYS/x", "ü/ z"] {
        assert_eq!(validate_topic(t), Ok(()), "{t}");
    }
    for t in [
        "",
        "a//b",
        "/a",
        "a/",
        "a/+",
        "#",
        "a/b#",
        "a\0",
        "a/{device}",
        "}",
    ] {
        assert!(validate_topic(t).is_err(), "{t:?}");
    }
    assert!(matches!(
        validate_topic("a/+"),
        Err(PatternError::WildcardInTopic { ch: '+', .. })
    ));
    assert!(validate_topic(&"a".repeat(257)).is_err());
}

#[test]
fn matching() {
    let yes = [
        ("a", "a"),
        ("a/b", "a/b"),
        ("+", "a"),
        ("a/+", "a/b"),
        ("+/x", "a/x"),
        ("#", "a"),
        ("#", "a/b/c"),
        ("a/#", "a"),
        ("a/#", "a/b"),
        ("a/#", "a/b/c"),
        ("a/+/#", "a/b"),
        ("sensors/+/temp", "sensors/kitchen/temp"),
    ];
    for (pat, t) in yes {
        assert!(p(pat).matches(t), "{pat} should match {t}");
    }
    let no = [
        ("a", "b"),
        ("a", "a/b"),
        ("a/b", "a"),
        ("+", "a/b"),
        ("a/+", "a"),
        ("a/#", "b"),
        ("a/#", "ab"),
        ("a/+/#", "a"),
        ("sensors/+/temp", "sensors/kitchen/humidity"),
        ("#", "a//b"),
        ("#", ""),
        ("+", "+"),
        ("a/{device}", "a/{device}"),
    ];
    for (pat, t) in no {
        assert!(!p(pat).matches(t), "{pat} should not match {t}");
    }
}

#[test]
fn placeholders() {
    let pat = p("dev/{device}/cmd/#");
    assert!(pat.has_placeholder());
    let r = pat.resolve("pump-7");
    assert_eq!(r.to_string(), "dev/pump-7/cmd/#");
    assert!(!r.has_placeholder());
    assert!(r.matches("dev/pump-7/cmd/start"));
    assert!(!r.matches("dev/pump-8/cmd/start"));
    assert_eq!(p("x-{device}-{device}").resolve("d").to_string(), "x-d-d");
    // Hostile ids cannot add levels or wildcards.
    assert_eq!(p("a/{device}").resolve("x/#").to_string(), "a/x__");
    assert_eq!(p("a/{device}").resolve("").to_string(), "a/_");
    assert_eq!(
        p("a/{device}").resolve("{device}\n").to_string(),
        "a/_device__"
    );
    assert_eq!(p("a/+").resolve("d"), p("a/+"));
    // Unresolved placeholders stand for "the device id" in covers().
    assert!(p("a/{device}").covers(&p("a/{device}")));
    assert!(p("a/+").covers(&p("a/{device}")));
    assert!(!p("a/{device}").covers(&p("a/+")));
    assert!(!p("a/x").covers(&p("a/{device}")));
}

#[test]
fn covers_examples() {
    let yes = [
        ("a/#", "a/+/b"),
        ("#", "#"),
        ("#", "a"),
        ("#", "+/+"),
        ("+/x", "a/x"),
        ("a/#", "a"),
        ("a/#", "a/#"),
        ("a/#", "a/b/#"),
        ("a/+", "a/b"),
        ("+/+", "+/b"),
        ("+/#", "a/#"),
        ("+/#", "#"),
        ("a", "a"),
    ];
    for (a, b) in yes {
        assert!(p(a).covers(&p(b)), "{a} should cover {b}");
    }
    let no = [
        ("a/+", "a/#"),
        ("a/+", "a"),
        ("a", "a/#"),
        ("a", "+"),
        ("a/b", "a/+"),
        ("+", "#"),
        ("+/+/#", "#"),
        ("a/b/#", "a/#"),
        ("a/b", "a/b/c"),
        ("a/+/c", "a/b"),
    ];
    for (a, b) in no {
        assert!(!p(a).covers(&p(b)), "{a} should not cover {b}");
    }
}

#[test]
fn serde() {
    let v: Vec<TopicPattern> = serde_json::from_str(r#"["a/+", "b/#"]"#).unwrap();
    assert_eq!(v, vec![p("a/+"), p("b/#")]);
    let e = serde_json::from_str::<Vec<TopicPattern>>(r#"["a//b"]"#).unwrap_err();
    assert!(e.to_string().contains("empty level"), "{e}");
    assert_eq!(serde_json::to_string(&p("a/#")).unwrap(), r#""a/#""#);
}
