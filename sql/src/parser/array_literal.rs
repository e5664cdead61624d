//! PostgreSQL's text form of a one-dimensional array, `{a,"b c"}`, as clients write array
//! literals and array parameters.

/// The elements of a one-dimensional PostgreSQL array literal, `{a,"b c"}`; `None` for
/// anything else (nested arrays, NULL elements, unbalanced quotes).
pub fn parse_array_literal(text: &str) -> Option<Vec<String>> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut out = vec![];
    if inner.trim().is_empty() {
        return Some(out);
    }
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let mut item = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => item.push(chars.next()?),
                    c => item.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if matches!(c, '{' | '}' | '"') {
                    return None;
                }
                item.push(c);
                chars.next();
            }
            let trimmed = item.trim();
            if trimmed.eq_ignore_ascii_case("null") {
                return None;
            }
            item = trimmed.to_string();
        }
        out.push(item);
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        match chars.next() {
            None => return Some(out),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_array_literal;

    #[test]
    fn array_literals_are_read_as_postgresql_writes_them() {
        assert_eq!(
            parse_array_literal("{r,p}"),
            Some(vec!["r".into(), "p".into()])
        );
        assert_eq!(parse_array_literal("{}"), Some(vec![]));
        assert_eq!(
            parse_array_literal(r#"{"a b","c\"d"}"#),
            Some(vec!["a b".into(), "c\"d".into()])
        );
        assert_eq!(parse_array_literal("{{1},{2}}"), None);
        assert_eq!(parse_array_literal("{a,NULL}"), None);
        assert_eq!(parse_array_literal("r,p"), None);
    }
}
