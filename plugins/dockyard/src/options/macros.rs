//! Default macros (`!dns`, `!local_ip`, `!rand`, `!tls`, `!if`): parsing a
//! `!` token into a [`Macro`], and evaluating one at resolution time.
//!
//! Parsing is stricter than Nanocloud's, which ignores extra words, panics on
//! an unknown `!rand` charset and accepts any `!rand` length: here each of
//! those is an error when the label is read, so a bad image fails before
//! anything is installed.

use std::collections::BTreeMap;

use super::model::{Charset, Macro, TlsPart, check_name};
use super::resolve::Environment;

/// The most `!rand` may ask for: far more than any key or password needs, and
/// small enough that a hostile label cannot make us allocate much.
pub const MAX_RAND_LEN: usize = 4096;
/// `!rand`'s length when the token gives none, as in Nanocloud.
const DEFAULT_RAND_LEN: usize = 16;
/// How many times `!rand` asks for more bytes when rejection sampling (for
/// the charsets that are not a power of two) discards some. Each round keeps
/// over 85% of the bytes, so 32 rounds only run out on a broken source.
const MAX_SAMPLING_ROUNDS: usize = 32;

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";
const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const CHARSET26: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
/// Nanocloud lists 76 characters (`…()-_+=`) but indexes them with `byte %
/// 73`, so only these first 73 ever appear; services may rely on that.
const CHARSET73: &[u8] =
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!@#$%^&*()-";

/// Parses a default token that starts with `!`. The error says what is wrong
/// with the token; the caller names the option and quotes the token.
pub(crate) fn parse_macro(token: &str) -> Result<Macro, String> {
    let mut words = token.split_whitespace();
    let name = words.next().unwrap_or_default();
    let args: Vec<&str> = words.collect();
    match name {
        "!dns" => no_arguments(name, &args).map(|()| Macro::Dns),
        "!local_ip" => no_arguments(name, &args).map(|()| Macro::LocalIp),
        "!rand" => parse_rand(&args),
        "!tls" => parse_tls(&args),
        "!if" => parse_if(&args),
        _ => Err(format!(
            "unknown macro {name:?}: expected !dns, !local_ip, !rand, !tls or !if"
        )),
    }
}

fn no_arguments(name: &str, args: &[&str]) -> Result<(), String> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(format!("{name} takes no arguments"))
    }
}

fn parse_rand(args: &[&str]) -> Result<Macro, String> {
    if args.len() > 2 {
        return Err("!rand takes at most a length and a charset".to_string());
    }
    let len = match args.first() {
        None => DEFAULT_RAND_LEN,
        Some(word) => parse_rand_len(word)?,
    };
    let charset = match args.get(1) {
        None => Charset::Hex,
        Some(word) => Charset::ALL
            .into_iter()
            .find(|charset| charset.name() == *word)
            .ok_or_else(|| {
                format!(
                    "unknown !rand charset {word:?}: expected hex, base64, charset26 or charset73"
                )
            })?,
    };
    Ok(Macro::Rand { len, charset })
}

fn parse_rand_len(word: &str) -> Result<usize, String> {
    // `usize::from_str` would take "+8"; only plain digits are a length.
    if word.is_empty() || !word.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(format!("!rand length {word:?} is not a number"));
    }
    match word.parse::<usize>() {
        Ok(0) => Err("!rand length must be at least 1".to_string()),
        Ok(len) if len <= MAX_RAND_LEN => Ok(len),
        _ => Err(format!("!rand length {word} is more than {MAX_RAND_LEN}")),
    }
}

fn parse_tls(args: &[&str]) -> Result<Macro, String> {
    let part = match args {
        ["key"] => TlsPart::Key,
        ["cert"] => TlsPart::Cert,
        ["ca"] => TlsPart::Ca,
        _ => return Err("!tls takes exactly one of key, cert or ca".to_string()),
    };
    Ok(Macro::Tls(part))
}

fn parse_if(args: &[&str]) -> Result<Macro, String> {
    let usage = "expected !if key=value THEN ELSE";
    let (condition, results) = match args.split_first() {
        Some((condition, results)) if results.len() <= 2 => (*condition, results),
        _ => return Err(usage.to_string()),
    };
    let (key, equals) = condition
        .split_once('=')
        .ok_or_else(|| format!("!if condition {condition:?} is not key=value ({usage})"))?;
    check_name("the !if key", key)?;
    // Missing THEN or ELSE is the empty string, as in Nanocloud.
    let result = |index: usize| results.get(index).copied().unwrap_or_default().to_string();
    Ok(Macro::If {
        key: key.to_string(),
        equals: equals.to_string(),
        then: result(0),
        otherwise: result(1),
    })
}

/// Evaluates a macro. `set` holds the options `!if` may look at: the
/// provided, chosen and imported ones (never other defaults, which would make
/// the result depend on evaluation order).
pub(crate) fn evaluate(
    macro_: &Macro,
    set: &BTreeMap<String, String>,
    env: &mut dyn Environment,
) -> Result<String, String> {
    match macro_ {
        Macro::Dns => env.nameserver(),
        Macro::LocalIp => env.local_ip(),
        Macro::Rand { len, charset } => random_text(*len, *charset, env),
        Macro::Tls(part) => Ok(env.tls_path(*part)),
        Macro::If {
            key,
            equals,
            then,
            otherwise,
        } => {
            let matches = set.get(key).is_some_and(|value| value == equals);
            Ok(if matches { then } else { otherwise }.clone())
        }
    }
}

fn random_text(len: usize, charset: Charset, env: &mut dyn Environment) -> Result<String, String> {
    match charset {
        Charset::Hex => {
            let bytes = exact_random_bytes(env, len)?;
            let mut text = String::with_capacity(2 * len);
            for byte in bytes {
                text.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
                text.push(char::from(HEX_DIGITS[usize::from(byte & 0x0f)]));
            }
            Ok(text)
        }
        Charset::Base64 => Ok(base64(&exact_random_bytes(env, len)?)),
        Charset::Charset26 => sample_alphabet(env, len, CHARSET26),
        Charset::Charset73 => sample_alphabet(env, len, CHARSET73),
    }
}

fn exact_random_bytes(env: &mut dyn Environment, len: usize) -> Result<Vec<u8>, String> {
    let bytes = env.random_bytes(len)?;
    if bytes.len() == len {
        Ok(bytes)
    } else {
        Err(format!(
            "the random source gave {} bytes instead of {len}",
            bytes.len()
        ))
    }
}

/// `len` characters drawn uniformly from `alphabet`. Bytes at or above the
/// largest multiple of the alphabet's size are discarded, so that `byte %
/// size` is unbiased (Nanocloud's cut-off for charset73 is off by three).
fn sample_alphabet(
    env: &mut dyn Environment,
    len: usize,
    alphabet: &[u8],
) -> Result<String, String> {
    let size = alphabet.len();
    let unbiased_limit = 256 - 256 % size;
    let mut text = String::with_capacity(len);
    for _ in 0..MAX_SAMPLING_ROUNDS {
        let missing = len - text.len();
        if missing == 0 {
            break;
        }
        for byte in env.random_bytes(missing)? {
            let byte = usize::from(byte);
            if byte < unbiased_limit && text.len() < len {
                text.push(char::from(alphabet[byte % size]));
            }
        }
    }
    if text.len() == len {
        Ok(text)
    } else {
        Err("the random source gave too few usable bytes".to_string())
    }
}

/// Standard base64 with padding (RFC 4648 §4), as Nanocloud writes it.
pub(crate) fn base64(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b0 = chunk.first().copied().unwrap_or_default();
        let b1 = chunk.get(1).copied().unwrap_or_default();
        let b2 = chunk.get(2).copied().unwrap_or_default();
        let group = (u32::from(b0) << 16) | (u32::from(b1) << 8) | u32::from(b2);
        let sextet = |shift: u32| char::from(BASE64_ALPHABET[((group >> shift) & 0x3f) as usize]);
        text.push(sextet(18));
        text.push(sextet(12));
        text.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        text.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
    text
}
