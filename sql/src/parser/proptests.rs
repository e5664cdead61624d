//! The SQL front end never panics: random, deep and mutated statement strings all come back
//! from [`parse_statements`] as `Ok` or `Err` (a panic or a stack overflow fails the test).

use proptest::prelude::*;

use super::parse_statements;

/// Pieces statements are made of: Eddy's and PostgreSQL's keywords, operators, brackets.
const PIECES: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "EMIT",
    "CHANGES",
    "FINAL",
    "LIMIT",
    "CREATE",
    "STREAM",
    "TABLE",
    "AS",
    "WITH",
    "WINDOW",
    "TUMBLING",
    "HOPPING",
    "SESSION",
    "SIZE",
    "ADVANCE",
    "BY",
    "GRACE",
    "PERIOD",
    "SECONDS",
    "GROUP",
    "HAVING",
    "INSERT",
    "INTO",
    "VALUES",
    "COPY",
    "STDIN",
    "TO",
    "STDOUT",
    "DECLARE",
    "CURSOR",
    "FOR",
    "FETCH",
    "CLOSE",
    "TERMINATE",
    "EXPLAIN",
    "SHOW",
    "DESCRIBE",
    "SET",
    "UNION",
    "ALL",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "AND",
    "OR",
    "NOT",
    "IN",
    "IS",
    "NULL",
    "KEY",
    "PRIMARY",
    "VARCHAR",
    "INT",
    "s",
    "t",
    "x",
    "abs",
    "count",
    "(",
    ")",
    "[",
    "]",
    ",",
    ";",
    "+",
    "-",
    "*",
    "/",
    "||",
    "=",
    "<>",
    "::",
    ".",
    "$1",
    "$2",
    "1",
    "2.5",
    "'a'",
    "''",
    "\"q\"",
    "--",
    "/*",
    "*/",
    "=>",
    "?",
    "@",
    "\\",
];

fn piece() -> impl Strategy<Value = String> {
    prop::sample::select(PIECES).prop_map(str::to_string)
}

/// A statement of random pieces.
fn soup() -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 0..40).prop_map(|p| p.join(" "))
}

/// A deep or wide expression: an operator chain, nesting, or both, of random sizes.
fn deep() -> impl Strategy<Value = String> {
    let op = prop::sample::select(&["+", " AND ", " OR ", " || ", " * ", " = "][..]);
    let open = prop::sample::select(&["(", "abs(", "CASE WHEN true THEN ", "(SELECT ", "-("][..]);
    (op, 1usize..4_000, open, 0usize..4_000, prop::bool::ANY).prop_map(
        |(op, terms, open, levels, union)| {
            let close = match open {
                "CASE WHEN true THEN " => " END",
                _ => ")",
            };
            let expr = format!(
                "{}{}{}",
                open.repeat(levels),
                vec!["1"; terms].join(op),
                close.repeat(levels)
            );
            if union {
                // Up to 1,500 selects, the statement kept to a few thousand terms.
                let selects = (3_000 / (terms + levels)).clamp(1, 1_500);
                vec![format!("SELECT {expr}"); selects].join(" UNION ALL ")
            } else {
                format!("SELECT {expr} FROM s EMIT CHANGES")
            }
        },
    )
}

/// A valid statement with random bytes replaced, inserted or cut.
fn mutated() -> impl Strategy<Value = String> {
    let statements = prop::sample::select(
        &[
            "CREATE STREAM s (k VARCHAR KEY, v INT) WITH (partitions = 3, timestamp = 'ts')",
            "CREATE TABLE t AS SELECT k, COUNT(*) AS n FROM s WINDOW TUMBLING (SIZE 1 MINUTE, \
             GRACE PERIOD 10 SECONDS) GROUP BY k EMIT CHANGES",
            "SELECT k, upper(v) FROM s WHERE v <> 'x' EMIT CHANGES LIMIT 5",
            "DECLARE c CURSOR WITH HOLD FOR SELECT * FROM s EMIT CHANGES; FETCH 2 FROM c",
            "COPY (SELECT * FROM s EMIT CHANGES LIMIT 2) TO STDOUT WITH (FORMAT csv)",
            "INSERT INTO s SELECT k, v FROM s2 WHERE v > 1 EMIT CHANGES",
            "SET 'auto.offset.reset' = 'earliest'; TERMINATE ALL; EXPLAIN CSAS_O_1",
        ][..],
    );
    let edits = prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, piece()), 0..6);
    (statements, edits).prop_map(|(sql, edits)| {
        let mut s: Vec<char> = sql.chars().collect();
        for (at, kind, piece) in edits {
            let i = at.index(s.len() + 1);
            match kind {
                0 if i < s.len() => {
                    s.remove(i);
                }
                1 => {
                    for (j, c) in piece.chars().enumerate() {
                        s.insert(i + j, c);
                    }
                }
                _ => {
                    s.truncate(i);
                }
            }
        }
        s.into_iter().collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_statements_never_panic(sql in soup()) {
        let _ = parse_statements(&sql);
    }

    #[test]
    fn deep_statements_never_panic(sql in deep()) {
        let _ = parse_statements(&sql);
    }

    #[test]
    fn mutated_statements_never_panic(sql in mutated()) {
        let _ = parse_statements(&sql);
    }
}
