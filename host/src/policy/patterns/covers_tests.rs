//! Exhaustive property tests of `TopicPattern::covers` and `matches` against
//! their definitions, over small patterns and topics.

use super::TopicPattern;

/// Every sequence of 1..=max_levels levels drawn from `alphabet`, joined by '/'.
fn sequences(alphabet: &[&str], max_levels: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut last: Vec<String> = alphabet.iter().map(|s| s.to_string()).collect();
    out.extend(last.iter().cloned());
    for _ in 1..max_levels {
        let next: Vec<String> = last
            .iter()
            .flat_map(|prefix| alphabet.iter().map(move |l| format!("{prefix}/{l}")))
            .collect();
        out.extend(next.iter().cloned());
        last = next;
    }
    out
}

/// All valid patterns of up to `max_levels` levels over literals `a`, `b`
/// and the wildcards (`#` only last).
fn patterns(max_levels: usize) -> Vec<TopicPattern> {
    sequences(&["a", "b", "+", "#"], max_levels)
        .into_iter()
        .filter_map(|s| TopicPattern::parse(&s).ok())
        .collect()
}

/// Topics of up to `max_levels` levels. The extra letter `c` stands for
/// "any other level" so that `+` is never equivalent to a finite set of literals.
fn topics(max_levels: usize) -> Vec<String> {
    sequences(&["a", "b", "c"], max_levels)
}

/// Reference matcher written straight from the MQTT definition.
fn reference_match(pattern: &str, topic: &str) -> bool {
    fn go(p: &[&str], t: &[&str]) -> bool {
        match (p.first(), t.first()) {
            (Some(&"#"), _) => true,
            (None, None) => true,
            (Some(&"+"), Some(_)) => go(&p[1..], &t[1..]),
            (Some(l), Some(m)) => l == m && go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    let p: Vec<&str> = pattern.split('/').collect();
    let t: Vec<&str> = topic.split('/').collect();
    go(&p, &t)
}

#[test]
fn pattern_enumeration_is_as_expected() {
    let pats = patterns(3);
    // 3 levels over {a,b,+} plus a final `#`: 3 + 9 + 27 without `#`,
    // 1 + 3 + 9 ending in `#`.
    assert_eq!(pats.len(), 3 + 9 + 27 + 1 + 3 + 9);
    assert!(pats.iter().any(|p| p.to_string() == "+/+/#"));
}

#[test]
fn matches_agrees_with_reference() {
    let topics = topics(5);
    for p in patterns(4) {
        let ps = p.to_string();
        for t in &topics {
            assert_eq!(p.matches(t), reference_match(&ps, t), "{ps} vs {t}");
        }
    }
}

#[test]
fn covers_is_exactly_inclusion() {
    // A pattern of n levels only tells topics apart up to n + 1 levels, so
    // topics one level deeper than the patterns decide inclusion exactly.
    for (pattern_levels, topic_levels) in [(3, 4), (4, 5)] {
        let pats = patterns(pattern_levels);
        let topics = topics(topic_levels);
        let matched: Vec<Vec<bool>> = pats
            .iter()
            .map(|p| topics.iter().map(|t| p.matches(t)).collect())
            .collect();
        let mut covering = 0;
        for (i, p) in pats.iter().enumerate() {
            for (j, q) in pats.iter().enumerate() {
                let included = matched[j]
                    .iter()
                    .zip(&matched[i])
                    .all(|(q_matches, p_matches)| !q_matches || *p_matches);
                assert_eq!(p.covers(q), included, "covers({p}, {q})");
                covering += usize::from(included);
            }
        }
        // Sanity: the relation is neither empty nor trivial.
        assert!(covering > pats.len() && covering < pats.len() * pats.len());
    }
}

#[test]
fn covers_is_reflexive_and_transitive() {
    let pats = patterns(3);
    for p in &pats {
        assert!(p.covers(p), "{p}");
    }
    for p in &pats {
        for q in pats.iter().filter(|q| p.covers(q)) {
            for r in pats.iter().filter(|r| q.covers(r)) {
                assert!(p.covers(r), "{p} ⊇ {q} ⊇ {r}");
            }
        }
    }
}

#[test]
fn covers_implies_matching_on_every_topic() {
    // The direction that matters for security, stated directly.
    let pats = patterns(3);
    let topics = topics(4);
    for p in &pats {
        for q in pats.iter().filter(|q| p.covers(q)) {
            for t in topics.iter().filter(|t| q.matches(t)) {
                assert!(p.matches(t), "{p} covers {q} but not topic {t}");
            }
        }
    }
}
