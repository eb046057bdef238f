//! Neither reader, nor the resolver on what they accept, panics on any
//! input: truncated and mutated versions of the fixture labels, and labels
//! built from random keys and tokens. Deterministic (a fixed-seed xorshift),
//! so a failure reproduces.

use std::collections::BTreeMap;

use super::fixtures::*;
use super::*;

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const BASES: [&str; 5] = [
    REAL_LABEL,
    GITEA_LABEL,
    GITEA_CAIRN_LABEL,
    CAIRN_EXAMPLE,
    REAL_IMAGE_CONFIG_LABELS,
];

/// Characters that matter to JSON or to the sigil grammar.
const SPICE: &[char] = &[
    '{', '}', '[', ']', '"', ':', ',', '*', '&', '!', '?', '=', '$', '\\', ' ', '\t', '0', '9',
    '-', '.', '_', 'a', '/', 'é', '\u{0}', '\n', '#',
];

fn mutate(base: &str, rng: &mut Rng) -> String {
    let mut chars: Vec<char> = base.chars().collect();
    for _ in 0..=rng.below(4) {
        let at = rng.below(chars.len() + 1);
        match rng.below(5) {
            0 => chars.truncate(at),
            1 if at < chars.len() => {
                chars.remove(at);
            }
            2 => chars.insert(at, *rng.pick(SPICE)),
            3 if at < chars.len() => chars[at] = *rng.pick(SPICE),
            _ => {
                let end = (at + rng.below(16)).min(chars.len());
                let slice: Vec<char> = chars[at..end].to_vec();
                let to = rng.below(chars.len() + 1);
                chars.splice(to..to, slice);
            }
        }
    }
    chars.into_iter().collect()
}

/// Well-formed keys, and (picked less often) malformed ones.
const KEYS: &[&str] = &[
    "a",
    "?a",
    "a=x",
    "a=y",
    "?a=x",
    "a=&mariadb",
    "db=&mariadb",
    "db=none",
    "secret_a",
    "port_1",
    "volume_1",
    "volume_encrypted_1",
    "secret_env_X",
    "runtime_args",
    "a_port",
    "db_port",
    "?db_engine",
];
const BAD_KEYS: &[&str] = &[
    "=",
    "?",
    "&",
    "a=&",
    "a=",
    "a b",
    "a=&missing",
    "??a",
    "a&b",
];

/// Well-formed default tokens for free keys.
const DEFAULT_TOKENS: &[&str] = &[
    "",
    "x",
    "3306",
    "/data",
    "!dns",
    "!local_ip",
    "!rand",
    "!rand 4096 charset73",
    "!rand 3 base64",
    "!tls key",
    "!if a=x y n",
    "!if db_port=3306 y",
    "80->8080/udp",
    "[::1]:1->2",
    "?s:k",
    "k:ext4",
];
/// Well-formed tokens for choice keys.
const CHOICE_TOKENS: &[&str] = &[
    "*a",
    "*a=x",
    "*db_port",
    "*db_secret_password",
    "*db_engine",
    "&cmd $a $db_port",
    "&bindings.x cmd $secret_a",
];
/// Malformed tokens, picked less often.
const BAD_TOKENS: &[&str] = &[
    "*",
    "*=",
    "&",
    "&bindings.",
    "&bindings.x",
    "!rand 0",
    "!rand 99999999999999999999",
    "!rand 8 nope",
    "!tls",
    "!if",
    "!",
    "*nope",
    "x",
];

fn pick_either(rng: &mut Rng, good: &[&'static str], bad: &[&'static str]) -> &'static str {
    let items = if rng.below(8) == 0 { bad } else { good };
    items[rng.below(items.len())]
}

/// A Nanocloud label of random keys and tokens.
fn generated(rng: &mut Rng) -> String {
    let entries: Vec<String> = (0..=rng.below(5))
        .map(|_| {
            let key = pick_either(rng, KEYS, BAD_KEYS);
            let (good, count) = if key.contains('=') {
                (CHOICE_TOKENS, rng.below(4))
            } else {
                (DEFAULT_TOKENS, rng.below(2))
            };
            let tokens: Vec<String> = (0..count)
                .map(|_| serde_json::Value::from(pick_either(rng, good, BAD_TOKENS)).to_string())
                .collect();
            format!("{}: [{}]", serde_json::Value::from(key), tokens.join(", "))
        })
        .collect();
    format!("{{{}}}", entries.join(", "))
}

/// Random user input, mostly for options the label declares.
fn provided(declared: &Declared, rng: &mut Rng) -> BTreeMap<String, String> {
    let mut names: Vec<&str> = declared
        .options
        .iter()
        .map(|option| option.name.as_str())
        .collect();
    names.extend(["db_port", "nope"]);
    let values = [
        "x", "y", "mariadb", "sqlite", "none", "3306", "", "/v", "80/tcp", "a b", "true",
    ];
    (0..rng.below(3))
        .map(|_| (rng.pick(&names).to_string(), rng.pick(&values).to_string()))
        .collect()
}

/// Runs everything on one label; only a panic fails. Returns how many
/// readers accepted it and how many resolutions succeeded.
fn exercise(label: &str, rng: &mut Rng) -> (usize, usize) {
    let (mut parsed, mut resolved) = (0, 0);
    for declared in [parse_nanocloud(label), parse_cairn(label)]
        .into_iter()
        .flatten()
    {
        parsed += 1;
        for provided in [BTreeMap::new(), provided(&declared, rng)] {
            let mut env = FakeEnv::new();
            if let Ok(result) = resolve(&declared, &provided, &providers(), &mut env) {
                resolved += 1;
                let _ = result.masked();
            }
        }
    }
    let labels = map(&[(NANOCLOUD_LABEL, label)]);
    let _ = read_labels(&labels);
    (parsed, resolved)
}

#[test]
fn truncated_labels_never_panic() {
    let mut rng = Rng(0x00d0_c4a2_d5ee_d001);
    for base in BASES {
        let chars: Vec<char> = base.chars().collect();
        for end in 0..=chars.len() {
            let prefix: String = chars[..end].iter().collect();
            exercise(&prefix, &mut rng);
        }
    }
}

#[test]
fn mutated_labels_never_panic() {
    let mut rng = Rng(0x5eed_0fd0_c4ea_2d00);
    let (mut accepted, mut resolved) = (0, 0);
    for round in 0..1500 {
        let base = BASES[round % BASES.len()];
        let (parsed, resolutions) = exercise(&mutate(base, &mut rng), &mut rng);
        accepted += parsed;
        resolved += resolutions;
    }
    // Some mutations keep the label valid, so the resolver runs too.
    assert!(
        accepted > 50 && resolved > 50,
        "{accepted} parsed, {resolved} resolved"
    );
}

#[test]
fn generated_labels_never_panic() {
    let mut rng = Rng(0x0ba5_eba1_1c0f_fee5);
    let (mut accepted, mut resolved) = (0, 0);
    for _ in 0..1500 {
        let (parsed, resolutions) = exercise(&generated(&mut rng), &mut rng);
        accepted += parsed;
        resolved += resolutions;
    }
    assert!(
        accepted > 250 && resolved > 150,
        "{accepted} parsed, {resolved} resolved"
    );
}
