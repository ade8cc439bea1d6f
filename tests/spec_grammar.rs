//! Keeps grammar/pixc.ebnf and the parser in step: the rules marked CHECKED there (statement
//! names, layer types, positional keys, the keys each layer type / `input` / `train`
//! takes) are compared with what the front ends accept, the example at the end of the
//! grammar must compile, and the documented quirks of the token rules must hold.

use pixc::front::build::LAYER_TYPES;
use pixc::front::dsl::positional_key;
use pixc::front::{parse, Syntax};
use std::collections::BTreeMap;

const GRAMMAR: &str = include_str!("../grammar/pixc.ebnf");

/// The grammar's rules: name -> right-hand side, comments removed.
fn rules() -> BTreeMap<String, String> {
    let mut text = String::new();
    let mut rest = GRAMMAR;
    while let Some(i) = rest.find("(*") {
        text.push_str(&rest[..i]);
        let end = rest[i..]
            .find("*)")
            .expect("unclosed comment in the grammar");
        rest = &rest[i + end + 2..];
    }
    text.push_str(rest);
    let mut map = BTreeMap::new();
    for rule in text.split(';') {
        let rule = rule.trim();
        if rule.is_empty() {
            continue;
        }
        let (name, rhs) = rule
            .split_once('=')
            .unwrap_or_else(|| panic!("not a rule: {rule}"));
        let name = name.trim().to_string();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad rule name `{name}`"
        );
        assert!(
            map.insert(name.clone(), rhs.trim().to_string()).is_none(),
            "`{name}` defined twice"
        );
    }
    map
}

/// The quoted terminals of a rule that is a plain alternation of terminals.
fn terminals(name: &str) -> Vec<String> {
    let r = rules();
    let rhs = r
        .get(name)
        .unwrap_or_else(|| panic!("the grammar has no rule `{name}`"));
    let mut out = Vec::new();
    for alt in rhs.split('|') {
        let t = alt.trim();
        assert!(
            t.len() >= 2 && t.starts_with('"') && t.ends_with('"'),
            "`{name}` is not a list of terminals: {rhs}"
        );
        out.push(t[1..t.len() - 1].to_string());
    }
    out
}

/// Error messages of parsing (not compiling) `text`.
fn messages(text: &str, syntax: Syntax) -> Vec<String> {
    match parse(text, syntax) {
        Ok(_) => vec![],
        Err(d) => d.into_iter().map(|d| d.message).collect(),
    }
}

#[test]
fn every_rule_referenced_is_defined() {
    let r = rules();
    for (name, rhs) in &r {
        // Identifiers outside quotes and `? ... ?` specials are rule references.
        let mut s = String::new();
        let mut quoted = false;
        let mut special = false;
        for c in rhs.chars() {
            match c {
                '"' if !special => quoted = !quoted,
                '?' if !quoted => special = !special,
                _ if quoted || special => {}
                _ => s.push(c),
            }
        }
        for word in s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if !word.is_empty() && !word.chars().all(|c| c.is_ascii_digit()) {
                assert!(
                    r.contains_key(word),
                    "`{name}` uses undefined rule `{word}`"
                );
            }
        }
    }
}

#[test]
fn layer_types_match_the_builder() {
    assert_eq!(terminals("layer_type"), LAYER_TYPES);
    for t in LAYER_TYPES {
        let yaml =
            format!("input: {{channels: 1, height: 8, width: 8, levels: 2}}\nlayers:\n  - {t}\n");
        let m = messages(&yaml, Syntax::Yaml);
        assert!(
            !m.iter().any(|m| m.contains("unknown layer type")),
            "{t}: {m:?}"
        );
    }
    let m = messages(
        "input channels=1 height=8 width=8 levels=2\nlayers {\n  lstm\n}\n",
        Syntax::Dsl,
    );
    assert!(
        m.iter().any(|m| m.contains("unknown layer type `lstm`")),
        "{m:?}"
    );
}

#[test]
fn statement_names_match_the_dsl() {
    let names = terminals("statement_name");
    assert_eq!(
        names,
        ["model", "param", "input", "layers", "small", "train"]
    );
    for s in &names {
        let line = if s == "layers" || s == "small" {
            format!("{s} {{\n}}\n")
        } else {
            format!("{s} x=1\n")
        };
        let m = messages(&line, Syntax::Dsl);
        assert!(
            !m.iter().any(|m| m.contains("unknown statement")),
            "{s}: {m:?}"
        );
    }
    for bogus in ["layer", "params", "conv", "output"] {
        let m = messages(&format!("{bogus} x=1\n"), Syntax::Dsl);
        assert!(
            m.iter()
                .any(|m| m.contains(&format!("unknown statement `{bogus}`"))),
            "{bogus}: {m:?}"
        );
    }
}

#[test]
fn positional_keys_match_the_dsl() {
    let r = rules();
    for t in LAYER_TYPES {
        let rule = format!("{t}_positional");
        let documented = r.get(&rule).map(|_| terminals(&rule));
        match (positional_key(t), documented) {
            (None, None) => {}
            (Some(k), Some(d)) => assert_eq!(d, [k], "{t}"),
            (p, d) => panic!("{t}: parser says {p:?}, grammar says {d:?}"),
        }
    }
    // And they behave as documented: the first bare value fills the key, anywhere.
    let base = "input channels=1 height=8 width=8 levels=2\nlayers {\n";
    for (line, ok) in [
        ("  conv 7 out=4 mask=A\n  head bernoulli\n", true),
        ("  conv out=4 7 mask=A\n  head kind=bernoulli\n", true),
        ("  conv out=4 mask=A\n  head bernoulli\n", false),
    ] {
        let text = format!("{base}{line}}}\n");
        assert_eq!(pixc::compile_str(&text, Syntax::Dsl).is_ok(), ok, "{text}");
    }
}

/// All keys any rule lists, the AST's field names (so a key dropped from every rule is
/// still tried) and some a user might guess.
fn all_keys() -> Vec<String> {
    let r = rules();
    let mut keys: Vec<String> = r
        .keys()
        .filter(|n| n.ends_with("_key"))
        .flat_map(|n| terminals(n))
        .collect();
    for k in [
        "out",
        "kernel",
        "mask",
        "skip",
        "hidden",
        "shift",
        "body",
        "count",
        "kind",
        "zzz",
        "type",
        "name",
        "stride",
        "padding",
        "dilation",
        "activation",
        "layers",
        "input",
    ] {
        keys.push(k.into());
    }
    keys.sort();
    keys.dedup();
    keys
}

#[test]
fn layer_keys_match_the_builder() {
    let keys = all_keys();
    for t in LAYER_TYPES {
        let allowed = terminals(&format!("{t}_key"));
        for k in &keys {
            let unknown = format!("unknown key `{k}` in `{t}`");
            for (syntax, text) in [
                (
                    Syntax::Yaml,
                    format!("input: {{channels: 1, height: 8, width: 8, levels: 2}}\nlayers:\n  - {t}: {{{k}: 1}}\n"),
                ),
                (
                    Syntax::Dsl,
                    format!("input channels=1 height=8 width=8 levels=2\nlayers {{\n  {t} {k}=1\n}}\n"),
                ),
            ] {
                let m = messages(&text, syntax);
                let rejected = m.iter().any(|m| m == &unknown);
                assert_eq!(
                    rejected,
                    !allowed.contains(k),
                    "{syntax:?}: `{t}` with key `{k}`: grammar says {}, parser says {m:?}",
                    if allowed.contains(k) { "allowed" } else { "unknown" }
                );
            }
        }
    }
}

#[test]
fn input_and_train_keys_match_the_builder() {
    let keys = all_keys();
    for section in ["input", "train"] {
        let allowed = terminals(&format!("{section}_key"));
        for k in &keys {
            let unknown = format!("unknown key `{k}` in `{section}`");
            let (yaml, dsl) = if section == "input" {
                (
                    format!("input: {{{k}: 1}}\nlayers: []\n"),
                    format!("input {k}=1\nlayers {{\n}}\n"),
                )
            } else {
                (
                    format!("input: {{channels: 1, height: 8, width: 8, levels: 2}}\nlayers: []\ntrain: {{{k}: 1}}\n"),
                    format!("input channels=1 height=8 width=8 levels=2\nlayers {{\n}}\ntrain {k}=1\n"),
                )
            };
            for (syntax, text) in [(Syntax::Yaml, yaml), (Syntax::Dsl, dsl)] {
                let m = messages(&text, syntax);
                let rejected = m.iter().any(|m| m == &unknown);
                assert_eq!(
                    rejected,
                    !allowed.contains(k),
                    "{syntax:?}: `{section}` key `{k}`: {m:?}"
                );
            }
        }
    }
}

#[test]
fn value_keywords_match_the_builder() {
    let base = |head: &str, mask: &str, opt: &str, flag: &str| {
        format!(
            "input channels=1 height=8 width=8 levels=2\nlayers {{\n  conv 7 out=2 mask={mask}\n  conv 1 out=2 skip={flag}\n  skip_sum\n  head {head}\n}}\ntrain optimizer={opt}\n"
        )
    };
    for m in terminals("mask") {
        // Mask B first leaks, so only A compiles; B must still parse.
        let ok = parse(&base("bernoulli", &m, "adam", "true"), Syntax::Dsl);
        assert!(ok.is_ok(), "mask {m}: {ok:?}");
    }
    for h in terminals("head_kind") {
        assert!(
            parse(&base(&h, "A", "adam", "true"), Syntax::Dsl).is_ok(),
            "head {h}"
        );
    }
    for o in terminals("optimizer") {
        assert!(
            parse(&base("bernoulli", "A", &o, "true"), Syntax::Dsl).is_ok(),
            "optimizer {o}"
        );
    }
    for b in terminals("boolean") {
        assert!(
            parse(&base("bernoulli", "A", "adam", &b), Syntax::Dsl).is_ok(),
            "boolean {b}"
        );
    }
    // Every schedule keyword is read as one; another word is an unknown schedule.
    let schedule_messages = |s: &str| {
        messages(
            &format!(
                "input channels=1 height=8 width=8 levels=2\nlayers {{\n}}\ntrain schedule={s}\n"
            ),
            Syntax::Dsl,
        )
    };
    for s in terminals("schedule") {
        let m = schedule_messages(&s);
        assert!(
            !m.iter().any(|m| m.starts_with("unknown schedule")),
            "schedule {s}: {m:?}"
        );
    }
    assert!(schedule_messages("sawtooth")
        .iter()
        .any(|m| m == "unknown schedule `sawtooth`"));
    assert!(parse(&base("gaussian", "A", "adam", "true"), Syntax::Dsl).is_err());
    assert!(parse(&base("bernoulli", "C", "adam", "true"), Syntax::Dsl).is_err());
    assert!(parse(&base("bernoulli", "A", "sgd", "true"), Syntax::Dsl).is_err());
    assert!(parse(&base("bernoulli", "A", "adam", "maybe"), Syntax::Dsl).is_err());
}

/// The example program at the end of the grammar compiles.
#[test]
fn the_grammar_example_compiles() {
    let start = GRAMMAR.find("7. Example").expect("example section");
    let body: String = GRAMMAR[start..]
        .lines()
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with("===="))
        .map(|l| format!("{}\n", l.strip_prefix("     ").unwrap_or(l.trim())))
        .collect();
    assert!(body.contains("layers {"), "{body}");
    match pixc::compile_str(&body, Syntax::Dsl) {
        Ok((spec, _)) => assert_eq!(spec.name.node, "diag_bilstm_7_mnist"),
        Err(d) => panic!("{d:#?}\n{body}"),
    }
}

/// The token rules' documented details (section 2) hold.
#[test]
fn documented_token_details_hold() {
    let ok = |layers: &str| {
        let t = format!("param h = 2\ninput channels=1 height=8 width=8 levels=2\nlayers {{\n{layers}\n  head bernoulli\n}}\n");
        pixc::compile_str(&t, Syntax::Dsl)
            .map(|_| ())
            .map_err(|d| format!("{d:?}"))
    };
    // Blanks around `=`, parenthesised values with blanks, a comment without a blank, a
    // brace without a blank, CRLF line ends, any indentation.
    assert_eq!(ok("  conv 7 out = (2 * h) mask=A# note"), Ok(()));
    assert_eq!(
        ok("conv 7 out=(h+1)*2 mask=A\r\n residual{\r\n relu\r\n   }\r"),
        Ok(())
    );
    // Parenthesised groups nest.
    assert_eq!(ok("  conv 7 out=((h+h)*1) mask=A"), Ok(()));
    // A bare word after the positional value is a flag (`skip` = `skip=true`).
    let t = "input channels=1 height=8 width=8 levels=2\nlayers {\n  conv 7 out=2 mask=A skip\n  skip_sum\n  head bernoulli\n}\n";
    let (spec, _) = pixc::compile_str(t, Syntax::Dsl).unwrap();
    assert!(spec.layers[0].skip);
    // Blocks may not follow `input` / `train`, and `layers` takes no items.
    assert!(parse("input channels=1 {\n}\n", Syntax::Dsl).is_err());
    assert!(parse("layers x {\n}\n", Syntax::Dsl).is_err());
    // No unary minus.
    assert!(ok("  conv 7 out=-2 mask=A").is_err());
    // `HxW` kernels.
    assert_eq!(ok("  conv 7x5 out=2 mask=A"), Ok(()));
}

/// At most 16 blocks may be open at once, `layers` included (grammar section 4).
#[test]
fn block_depth_limit_is_as_documented() {
    let spec = |blocks: usize| {
        let mut s = String::from(
            "input channels=1 height=8 width=8 levels=2\nlayers {\nconv 7 out=2 mask=A\n",
        );
        for _ in 0..blocks - 1 {
            s.push_str("residual {\n");
        }
        s.push_str("relu\n");
        for _ in 0..blocks - 1 {
            s.push_str("}\n");
        }
        s.push_str("head bernoulli\n}\n");
        s
    };
    assert!(parse(&spec(16), Syntax::Dsl).is_ok());
    let m = messages(&spec(17), Syntax::Dsl);
    assert!(m.iter().any(|m| m.contains("deeper than 16")), "{m:?}");
}
