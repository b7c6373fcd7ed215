//! The three SQL dialects the store speaks. Statements are written once,
//! with `$n` placeholders numbered in the order they are bound; MySQL and
//! MariaDB take `?` instead, so `sql!` rewrites a statement the first time it
//! runs there and keeps the rewrite for the life of the process.

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// The embedded default: one writer, the database lock as the write lock.
    Sqlite,
    /// PostgreSQL: row locks, `FOR UPDATE SKIP LOCKED`.
    Postgres,
    /// MySQL 8 or MariaDB 10.6+: row locks, `FOR UPDATE SKIP LOCKED`, `?`.
    MySql,
}

impl Dialect {
    /// Whether rows are locked one by one (`FOR UPDATE`), rather than by the
    /// first write taking the whole database.
    pub fn row_locks(self) -> bool {
        !matches!(self, Self::Sqlite)
    }
}

/// A statement's text for the dialect `$d`: as written, or with `?` for
/// MySQL. The text must be a constant, so the SQL stays a static string
/// (sqlx refuses strings built at run time).
macro_rules! sql {
    ($d:expr, $text:expr $(,)?) => {{
        const TEXT: &str = $text;
        const _: () = assert!(
            $crate::store::dialect::in_order(TEXT),
            "placeholders must run $1, $2, ... in order, each once"
        );
        static REWRITTEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        match $d {
            $crate::store::dialect::Dialect::MySql => REWRITTEN
                .get_or_init(|| $crate::store::dialect::question_marks(TEXT))
                .as_str(),
            _ => TEXT,
        }
    }};
}
pub(super) use sql;

/// Whether the placeholders of `text` run `$1`, `$2`, ... in order, each
/// once. `?` binds by position, so a statement that needs a value twice
/// binds it twice; `sql!` checks this when the crate compiles.
pub const fn in_order(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut expected = 1;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let mut n = 0;
            let mut digits = 0;
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                n = n * 10 + (bytes[i] - b'0') as usize;
                digits += 1;
                i += 1;
            }
            if digits == 0 || n != expected {
                return false;
            }
            expected += 1;
        } else {
            i += 1;
        }
    }
    true
}

/// `text` with each `$n` turned into `?` (`in_order` holds for it).
pub fn question_marks(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(if c == '$' { '?' } else { c });
        if c == '$' {
            while chars.next_if(char::is_ascii_digit).is_some() {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_question_marks() {
        assert_eq!(
            question_marks("UPDATE t SET a = $1, b = $2 WHERE id = $3"),
            "UPDATE t SET a = ?, b = ? WHERE id = ?"
        );
        assert_eq!(question_marks("SELECT 1"), "SELECT 1");
    }

    #[test]
    fn placeholders_out_of_order_or_repeated_are_refused() {
        assert!(in_order("UPDATE t SET a = $1 WHERE id = $2"));
        assert!(!in_order("UPDATE t SET a = $2 WHERE id = $1"));
        assert!(!in_order("INSERT INTO t VALUES ($1, $1)"));
        assert!(!in_order("SELECT $"));
    }

    #[test]
    fn the_macro_picks_the_dialect() {
        let for_mysql = sql!(Dialect::MySql, "SELECT $1");
        let for_postgres = sql!(Dialect::Postgres, "SELECT $1");
        assert_eq!(for_mysql, "SELECT ?");
        assert_eq!(for_postgres, "SELECT $1");
    }
}
