//! Default macros: every form, and what each evaluates to on a fake device.

use std::collections::BTreeMap;

use super::fixtures::*;
use super::macros::{base64, evaluate, parse_macro};
use super::*;

fn parsed(token: &str) -> Macro {
    match parse_macro(token) {
        Ok(macro_) => macro_,
        Err(problem) => panic!("{token:?} should parse: {problem}"),
    }
}

fn evaluated(macro_: &Macro, env: &mut FakeEnv) -> String {
    match evaluate(macro_, &BTreeMap::new(), env) {
        Ok(text) => text,
        Err(problem) => panic!("{macro_} should evaluate: {problem}"),
    }
}

#[test]
fn every_macro_form_parses() {
    let rand = |len, charset| Macro::Rand { len, charset };
    assert_eq!(parsed("!dns"), Macro::Dns);
    assert_eq!(parsed("!local_ip"), Macro::LocalIp);
    assert_eq!(
        parsed("!rand"),
        rand(16, Charset::Hex),
        "Nanocloud's defaults"
    );
    assert_eq!(parsed("!rand 8"), rand(8, Charset::Hex));
    assert_eq!(parsed("!rand 1 base64"), rand(1, Charset::Base64));
    assert_eq!(
        parsed("!rand 4096 charset26"),
        rand(4096, Charset::Charset26)
    );
    assert_eq!(parsed("!rand  12\tcharset73"), rand(12, Charset::Charset73));
    assert_eq!(parsed("!tls key"), Macro::Tls(TlsPart::Key));
    assert_eq!(parsed("!tls cert"), Macro::Tls(TlsPart::Cert));
    assert_eq!(parsed("!tls ca"), Macro::Tls(TlsPart::Ca));
    let if_ = |equals: &str, then: &str, otherwise: &str| Macro::If {
        key: "mode".into(),
        equals: equals.into(),
        then: then.into(),
        otherwise: otherwise.into(),
    };
    assert_eq!(parsed("!if mode=tls on off"), if_("tls", "on", "off"));
    assert_eq!(
        parsed("!if mode=tls on"),
        if_("tls", "on", ""),
        "missing ELSE is empty"
    );
    assert_eq!(parsed("!if mode=tls"), if_("tls", "", ""));
    assert_eq!(parsed("!if mode= unset set"), if_("", "unset", "set"));
    assert_eq!(
        parsed("!if mode=a=b x y"),
        if_("a=b", "x", "y"),
        "split at the first '='"
    );
}

#[test]
fn display_writes_a_token_that_parses_back() {
    for token in [
        "!dns",
        "!local_ip",
        "!rand 24 charset26",
        "!rand 16 hex",
        "!tls ca",
        "!if mode=tls on off",
    ] {
        let macro_ = parsed(token);
        assert_eq!(macro_.to_string(), token);
        assert_eq!(parsed(&macro_.to_string()), macro_);
    }
    assert_eq!(parsed("!rand").to_string(), "!rand 16 hex");
}

#[test]
fn host_macros_ask_the_environment() {
    let mut env = FakeEnv::new();
    assert_eq!(evaluated(&Macro::Dns, &mut env), NAMESERVER);
    assert_eq!(evaluated(&Macro::LocalIp, &mut env), LOCAL_IP);
    assert_eq!(
        evaluated(&Macro::Tls(TlsPart::Key), &mut env),
        "/var/run/nanocloud.io/tls/key.pem"
    );
    env.no_nameserver = true;
    let failure = evaluate(&Macro::Dns, &BTreeMap::new(), &mut env);
    assert_eq!(
        failure,
        Err("no nameserver in /etc/resolv.conf".to_string())
    );
}

#[test]
fn rand_hex_writes_two_digits_per_byte() {
    let mut env = FakeEnv::new();
    env.queued = vec![0x00, 0xff, 0x0a, 0xb1];
    assert_eq!(evaluated(&parsed("!rand 4 hex"), &mut env), "00ff0ab1");
    let text = evaluated(&parsed("!rand"), &mut env);
    assert_eq!(text.len(), 32);
    assert!(
        text.bytes()
            .all(|byte| byte.is_ascii_hexdigit() && !byte.is_ascii_uppercase())
    );
}

#[test]
fn rand_base64_encodes_the_bytes() {
    let mut env = FakeEnv::new();
    env.queued = b"foob".to_vec();
    assert_eq!(evaluated(&parsed("!rand 4 base64"), &mut env), "Zm9vYg==");
    let text = evaluated(&parsed("!rand 30 base64"), &mut env);
    assert_eq!(text.len(), 40);
}

#[test]
fn base64_matches_rfc_4648_vectors() {
    let vectors = [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ];
    for (input, expected) in vectors {
        assert_eq!(base64(input.as_bytes()), expected);
    }
    assert_eq!(base64(&[0xfb, 0xff, 0xfe]), "+//+");
}

#[test]
fn rand_charsets_sample_without_bias() {
    let mut env = FakeEnv::new();
    // 234 and up would make a–f more likely than the rest: they are skipped.
    env.queued = vec![255, 234, 0, 25, 233, 26];
    assert_eq!(evaluated(&parsed("!rand 4 charset26"), &mut env), "azza");
    assert_eq!(
        env.random_requested,
        4 + 2,
        "asked again for the two skipped"
    );

    let mut env = FakeEnv::new();
    // charset73: 219 and up are skipped; 72 is '-' and 73 wraps to '0'.
    env.queued = vec![219, 255, 72, 73, 36, 10];
    assert_eq!(evaluated(&parsed("!rand 4 charset73"), &mut env), "-0Aa");

    let mut env = FakeEnv::new();
    let letters = evaluated(&parsed("!rand 300 charset26"), &mut env);
    assert_eq!(letters.len(), 300);
    assert!(letters.bytes().all(|byte| byte.is_ascii_lowercase()));
    let symbols = evaluated(&parsed("!rand 300 charset73"), &mut env);
    assert_eq!(symbols.chars().count(), 300);
    let alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!@#$%^&*()-";
    assert_eq!(alphabet.len(), 73);
    assert!(symbols.chars().all(|c| alphabet.contains(c)));
}

/// A random source that only ever gives bytes every charset rejects, or too
/// few bytes.
struct BrokenRandom {
    short: bool,
}

impl Environment for BrokenRandom {
    fn nameserver(&mut self) -> Result<String, String> {
        Err("unused".into())
    }
    fn local_ip(&mut self) -> Result<String, String> {
        Err("unused".into())
    }
    fn random_bytes(&mut self, n: usize) -> Result<Vec<u8>, String> {
        Ok(if self.short {
            vec![1; n / 2]
        } else {
            vec![255; n]
        })
    }
    fn tls_path(&mut self, _: TlsPart) -> String {
        String::new()
    }
}

#[test]
fn a_broken_random_source_is_an_error_not_a_hang() {
    let mut env = BrokenRandom { short: false };
    let result = evaluate(&parsed("!rand 8 charset26"), &BTreeMap::new(), &mut env);
    assert_eq!(
        result,
        Err("the random source gave too few usable bytes".to_string())
    );
    let mut env = BrokenRandom { short: true };
    let result = evaluate(&parsed("!rand 8 hex"), &BTreeMap::new(), &mut env);
    assert_eq!(
        result,
        Err("the random source gave 4 bytes instead of 8".to_string())
    );
}

#[test]
fn if_compares_only_the_options_it_is_given() {
    let set = map(&[("mode", "tls"), ("empty", "")]);
    let mut env = FakeEnv::new();
    let mut check = |token: &str, expected: &str| {
        assert_eq!(
            evaluate(&parsed(token), &set, &mut env),
            Ok(expected.to_string()),
            "{token}"
        );
    };
    check("!if mode=tls on off", "on");
    check("!if mode=plain on off", "off");
    check("!if mode=tls", "");
    check("!if absent=x yes no", "no");
    check("!if absent= yes no", "no");
    check("!if empty= yes no", "yes");
}
