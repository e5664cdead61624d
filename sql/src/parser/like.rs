//! LIKE patterns with another escape character than the backslash (`ESCAPE '/'`, as
//! SQLAlchemy writes): DataFusion only knows the backslash, so such a pattern is respelled.

/// `pattern`, whose escape character is `escape`, spelled with backslash escapes: `escape`
/// followed by a character becomes `\` and that character, and a plain backslash becomes
/// `\\`.
pub fn backslash_escaped(pattern: &str, escape: char) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == escape {
            out.push('\\');
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::backslash_escaped;

    #[test]
    fn escapes_are_respelled_with_backslashes() {
        assert_eq!(backslash_escaped("pg/_%", '/'), "pg\\_%");
        assert_eq!(backslash_escaped("a\\b//c", '/'), "a\\\\b\\/c");
        assert_eq!(backslash_escaped("plain", '/'), "plain");
    }
}
