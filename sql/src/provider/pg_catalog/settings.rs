//! `pg_settings`: the session's settings (those Eddy knows, and any the session set), as
//! psql's `\dconfig` and tools that list parameters read them. Its values come from the
//! session at plan time through [`Settings`], so a `SET` shows in the next query.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, Int32Array, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::TableProvider;
use datafusion::error::Result;

use super::{Rel, text_list};

/// One setting of a session.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    /// Its name, as `SHOW` and `current_setting` take it.
    pub name: String,
    /// Its value in the session.
    pub value: String,
    /// Its built-in default (`None` for a custom setting the session made up).
    pub default: Option<String>,
    /// Whether the session set it (`SET`), rather than having the default.
    pub set: bool,
}

/// Where `pg_settings` reads a session's settings from.
#[derive(Clone)]
pub struct Settings(Arc<dyn Fn() -> Vec<Setting> + Send + Sync>);

impl Settings {
    /// Settings read by `read`, called each time `pg_settings` is planned.
    pub fn new(read: impl Fn() -> Vec<Setting> + Send + Sync + 'static) -> Self {
        Settings(Arc::new(read))
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Settings")
    }
}

/// Settings a client cannot change (PostgreSQL's `internal` context).
const INTERNAL: [&str; 10] = [
    "block_size",
    "integer_datetimes",
    "is_superuser",
    "lc_collate",
    "lc_ctype",
    "max_identifier_length",
    "max_index_keys",
    "server_encoding",
    "server_version",
    "server_version_num",
];

/// `pg_settings` over `settings` (no rows without a session).
pub(super) fn pg_settings(settings: Option<&Settings>) -> Result<Arc<dyn TableProvider>> {
    let mut rows = settings.map(|s| (s.0)()).unwrap_or_default();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    let n = rows.len();
    let text = |f: &dyn Fn(&Setting) -> Option<String>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<StringArray>())
    };
    let vartype = |s: &Setting| {
        let v = s.default.as_deref().unwrap_or(&s.value);
        Some(
            if matches!(v, "on" | "off") {
                "bool"
            } else if s.name == "statement_timeout" || v.parse::<i64>().is_ok() {
                "integer"
            } else {
                "string"
            }
            .to_string(),
        )
    };
    Rel::default()
        .col("name", text(&|s| Some(s.name.clone())))
        .col("setting", text(&|s| Some(s.value.clone())))
        .col(
            "unit",
            text(&|s| (s.name == "statement_timeout").then(|| "ms".to_string())),
        )
        .col(
            "category",
            text(&|s| {
                Some(
                    match s.name.as_str() {
                        "auto.offset.reset" => "Eddy / Push Queries",
                        n if INTERNAL.contains(&n) => "Preset Options",
                        _ if s.default.is_none() => "Customized Options",
                        _ => "Client Connection Defaults",
                    }
                    .to_string(),
                )
            }),
        )
        .col("short_desc", text(&|_| None))
        .col("extra_desc", text(&|_| None))
        .col(
            "context",
            text(&|s| {
                let internal = INTERNAL.contains(&s.name.as_str());
                Some(if internal { "internal" } else { "user" }.to_string())
            }),
        )
        .col("vartype", text(&vartype))
        .col(
            "source",
            text(&|s| Some(if s.set { "session" } else { "default" }.to_string())),
        )
        .col("min_val", text(&|_| None))
        .col("max_val", text(&|_| None))
        .nulls("enumvals", text_list(), n)
        .col("boot_val", text(&|s| s.default.clone()))
        .col("reset_val", text(&|s| s.default.clone()))
        .nulls("sourcefile", DataType::Utf8, n)
        .col("sourceline", Arc::new(Int32Array::from(vec![None; n])))
        .col(
            "pending_restart",
            Arc::new(BooleanArray::from(vec![false; n])),
        )
        .build()
}
