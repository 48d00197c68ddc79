//! Parser for systemd `EnvironmentFile=` syntax: `KEY=value` lines, `#`/`;` comments,
//! single or double quotes, and a trailing backslash to continue a line.

use std::fmt;

#[derive(Debug, PartialEq)]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// Parses the whole file into `(key, value)` pairs, in file order.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, ParseError> {
    let mut pairs = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, first)) = lines.next() {
        let line_no = index + 1;
        let mut line = first.to_owned();
        while line.ends_with('\\') && !line.ends_with("\\\\") {
            line.pop();
            match lines.next() {
                Some((_, next)) => line.push_str(next),
                None => break,
            }
        }
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let fail = |reason: String| ParseError { line: line_no, reason };
        // The line itself is never repeated: it may hold a token.
        let Some((key, raw)) = trimmed.split_once('=') else {
            return Err(fail("expected KEY=value".into()));
        };
        let key = key.trim();
        let valid_key = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_key {
            let reason = match key.strip_prefix("export ") {
                Some(_) => "`export` is not needed here (remove `export`)".to_owned(),
                // A name, said back; anything else may be a value run into it.
                None if key.len() <= 64 && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                    format!("`{key}` is not a variable name (letters, digits and `_`, not starting with a digit)")
                }
                None => "what comes before `=` is not a variable name (letters, digits and `_`)".to_owned(),
            };
            return Err(fail(reason));
        }
        pairs.push((key.to_owned(), value(raw.trim()).map_err(fail)?));
    }
    Ok(pairs)
}

fn value(raw: &str) -> Result<String, String> {
    let mut chars = raw.chars();
    let quote = match chars.next() {
        Some(q @ ('"' | '\'')) => q,
        _ => return Ok(raw.to_owned()),
    };
    let mut out = String::new();
    loop {
        match chars.next() {
            None => return Err(format!("the value has no closing {quote}")),
            Some(c) if c == quote => break,
            Some('\\') if quote == '"' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(c) => out.push(c),
                None => return Err("the value ends with a lone backslash".into()),
            },
            Some(c) => out.push(c),
        }
    }
    let rest: String = chars.collect();
    if rest.trim().is_empty() {
        Ok(out)
    } else {
        Err("unexpected text after the closing quote".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: &[(&str, &str)]) {
        let got = parse(text).unwrap();
        let expected: Vec<(String, String)> = expected.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(got, expected, "input: {text:?}");
    }

    #[test]
    fn accepted() {
        check("", &[]);
        check("# comment\n; also\n\nA=1\n", &[("A", "1")]);
        check("  A = spaced value  ", &[("A", "spaced value")]);
        check("A=\"quoted # not a comment\"", &[("A", "quoted # not a comment")]);
        check("A='single $literal \\n'", &[("A", "single $literal \\n")]);
        check("A=\"esc \\\" \\\\ \\n\"", &[("A", "esc \" \\ \n")]);
        check("A=one \\\ntwo", &[("A", "one two")]);
        check("A=\nB=x=y", &[("A", ""), ("B", "x=y")]);
        check(
            "VAULTMESH_NODE_ID=550e8400-e29b-41d4-a716-446655440000\nVAULTMESH_CC_URL=https://cc.example\nRUST_LOG=info",
            &[
                ("VAULTMESH_NODE_ID", "550e8400-e29b-41d4-a716-446655440000"),
                ("VAULTMESH_CC_URL", "https://cc.example"),
                ("RUST_LOG", "info"),
            ],
        );
    }

    /// A mistaken line may hold a token: the error names its line, never its text.
    #[test]
    fn a_mistake_never_repeats_what_the_line_holds() {
        for text in [
            "HEARTH_TOKEN hen_s3cret",
            "HEARTH_TOKEN hen_s3cret=x",
            "A=\"x\" hen_s3cret",
            "export HEARTH_TOKEN=hen_s3cret x'",
        ] {
            let err = parse(text).unwrap_err();
            assert!(!err.reason.contains("s3cret"), "{text:?}: {}", err.reason);
        }
    }

    #[test]
    fn refused_with_the_line() {
        let cases = [
            ("A=1\nnonsense", 2, "expected KEY=value"),
            ("export A=1", 1, "remove `export`"),
            ("1A=x", 1, "not a variable name"),
            ("\n\nA=\"open", 3, "no closing \""),
            ("A='x' y", 1, "after the closing quote"),
            ("A B=c", 1, "before `=` is not a variable name"),
        ];
        for (text, line, reason) in cases {
            let err = parse(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}");
            assert!(err.reason.contains(reason), "{text:?}: {}", err.reason);
        }
    }
}
