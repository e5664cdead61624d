//! PostgreSQL's text form of a one-dimensional array, `{a,"b c"}`, as clients write array
//! literals and array parameters.

/// The elements of a one-dimensional PostgreSQL array literal, `{a,"b c"}`; `None` for
/// anything else (nested arrays, NULL elements, unbalanced quotes).
pub fn parse_array_literal(text: &str) -> Option<Vec<String>> {
    parse_array_elements(text)?.into_iter().collect()
}

/// The elements of a one-dimensional PostgreSQL array literal, an unquoted `NULL` as `None`
/// (`"NULL"` quoted is the string); `None` for anything else (nested arrays, an empty
/// unquoted element, unbalanced quotes).
pub fn parse_array_elements(text: &str) -> Option<Vec<Option<String>>> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut out = vec![];
    if inner.trim().is_empty() {
        return Some(out);
    }
    let mut chars = inner.chars().peekable();
    let skip_space = |chars: &mut std::iter::Peekable<std::str::Chars>| {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
    };
    loop {
        skip_space(&mut chars);
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
            out.push(Some(item));
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
            if trimmed.is_empty() {
                return None;
            }
            out.push((!trimmed.eq_ignore_ascii_case("null")).then(|| trimmed.to_string()));
        }
        skip_space(&mut chars);
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
        assert_eq!(parse_array_literal("{a,,b}"), None);
        assert_eq!(
            super::parse_array_elements(r#"{a,NULL,"NULL"}"#),
            Some(vec![Some("a".into()), None, Some("NULL".into())])
        );
    }
}
