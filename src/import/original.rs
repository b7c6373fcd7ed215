//! The Go service's tables, read from its MySQL database as they stand.
//! Every column is read as text (`CAST(... AS CHAR)`), so an integer, a
//! `tinyint(1)`, a `JSON` or a `DATETIME` column reads the same way whatever
//! type the original's schema gave it; `plan.rs` interprets the text.

use sqlx::{Connection, MySqlConnection, Row};

/// Why the original's database could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The URL is not a MySQL one.
    #[error("--from must be a mysql:// URL (the original service's database), not a `{0}` one")]
    Scheme(String),
    /// The server did not answer, or refused the credentials.
    #[error("cannot connect to the original's database: {0}")]
    Connect(sqlx::Error),
    /// A table or column is missing, or a query failed.
    #[error("cannot read the original's table `{table}`: {error}")]
    Table {
        /// The table.
        table: &'static str,
        /// The database's error.
        error: sqlx::Error,
    },
}

/// A row of `config`.
#[derive(Debug, Clone, Default)]
pub struct ConfigRow {
    /// The config's id.
    pub config_id: String,
    /// The stable version's `code.code_id`.
    pub code_release: Option<String>,
    /// The version under test's `code.code_id`.
    pub code_unittest: Option<String>,
    /// The gray version's `code.code_id`.
    pub code_gray: Option<String>,
    /// The gray share, 0 to 100.
    pub percentage: Option<String>,
    /// `valid` when active.
    pub status: Option<String>,
    /// The client secret built into the apps.
    pub secret: Option<String>,
}

/// A row of `code`: one version.
#[derive(Debug, Clone, Default)]
pub struct CodeRow {
    /// The row's own key, which `error_report.code_ref` names.
    pub id: String,
    /// The version's id, which clients send back.
    pub code_id: String,
    /// `starlark` or `javascript`.
    pub lang: Option<String>,
    /// The rules, as JSON.
    pub rules: Option<String>,
    /// The parameter schema, as JSON.
    pub params: Option<String>,
    /// The source.
    pub code: Option<String>,
    /// Marked broken.
    pub is_broken: Option<String>,
    /// Reports counted against it.
    pub err_count: Option<String>,
}

/// A row of `unittest`: one test case.
#[derive(Debug, Clone, Default)]
pub struct TestRow {
    /// The test's id, which `GET /test/{test_id}` names.
    pub test_id: String,
    /// The parameters, a JSON object.
    pub input: Option<String>,
    /// The expected result, as JSON.
    pub output: Option<String>,
    /// The version it tests (`code.code_id`).
    pub code_id: Option<String>,
}

/// A row of `error_report`.
#[derive(Debug, Clone, Default)]
pub struct ReportRow {
    /// The row's key.
    pub id: String,
    /// When the client saw the error (unix seconds, or a date).
    pub time: Option<String>,
    /// What the client said.
    pub message: Option<String>,
    /// The version's `code.id`.
    pub code_ref: Option<String>,
}

/// Everything the import reads.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    /// `config`.
    pub configs: Vec<ConfigRow>,
    /// `code`.
    pub codes: Vec<CodeRow>,
    /// `unittest`.
    pub tests: Vec<TestRow>,
    /// `error_report`.
    pub reports: Vec<ReportRow>,
}

/// Reads the four tables, each in its key's order.
pub async fn read(url: &str) -> Result<Tables, ReadError> {
    if !url.starts_with("mysql://") {
        // Only the scheme: the rest may hold a password.
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        return Err(ReadError::Scheme(scheme.to_owned()));
    }
    let mut conn = MySqlConnection::connect(url).await.map_err(ReadError::Connect)?;
    let text = |row: &sqlx::mysql::MySqlRow, i: usize| row.try_get::<Option<String>, _>(i);
    let configs = table(
        &mut conn,
        "config",
        "SELECT CAST(config_id AS CHAR), CAST(code_release AS CHAR), CAST(code_unittest AS CHAR), \
         CAST(code_gray AS CHAR), CAST(percentage AS CHAR), CAST(status AS CHAR), CAST(secret AS CHAR) \
         FROM config ORDER BY config_id",
        |r| {
            Ok(ConfigRow {
                config_id: text(r, 0)?.unwrap_or_default(),
                code_release: text(r, 1)?,
                code_unittest: text(r, 2)?,
                code_gray: text(r, 3)?,
                percentage: text(r, 4)?,
                status: text(r, 5)?,
                secret: text(r, 6)?,
            })
        },
    )
    .await?;
    let codes = table(
        &mut conn,
        "code",
        "SELECT CAST(id AS CHAR), CAST(code_id AS CHAR), CAST(lang AS CHAR), CAST(rules AS CHAR), \
         CAST(params AS CHAR), CAST(code AS CHAR), CAST(is_broken AS CHAR), CAST(err_count AS CHAR) \
         FROM code ORDER BY id",
        |r| {
            Ok(CodeRow {
                id: text(r, 0)?.unwrap_or_default(),
                code_id: text(r, 1)?.unwrap_or_default(),
                lang: text(r, 2)?,
                rules: text(r, 3)?,
                params: text(r, 4)?,
                code: text(r, 5)?,
                is_broken: text(r, 6)?,
                err_count: text(r, 7)?,
            })
        },
    )
    .await?;
    let tests = table(
        &mut conn,
        "unittest",
        "SELECT CAST(test_id AS CHAR), CAST(input AS CHAR), CAST(output AS CHAR), CAST(code_id AS CHAR) \
         FROM unittest ORDER BY test_id",
        |r| {
            Ok(TestRow {
                test_id: text(r, 0)?.unwrap_or_default(),
                input: text(r, 1)?,
                output: text(r, 2)?,
                code_id: text(r, 3)?,
            })
        },
    )
    .await?;
    // A date column becomes unix seconds here (sqlx's connection is UTC),
    // an integer one is read as it is.
    let dated = sqlx::query(
        "SELECT DATA_TYPE FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'error_report' AND COLUMN_NAME = 'time'",
    )
    .fetch_optional(&mut conn)
    .await
    .map_err(|error| ReadError::Table {
        table: "error_report",
        error,
    })?
    .map(|row| row.try_get::<String, _>(0).unwrap_or_default().to_ascii_lowercase())
    .is_some_and(|kind| matches!(kind.as_str(), "datetime" | "timestamp" | "date"));
    let sql = match dated {
        true => {
            "SELECT CAST(id AS CHAR), CAST(UNIX_TIMESTAMP(`time`) DIV 1 AS CHAR), CAST(message AS CHAR), \
             CAST(code_ref AS CHAR) FROM error_report ORDER BY id"
        }
        false => {
            "SELECT CAST(id AS CHAR), CAST(`time` AS CHAR), CAST(message AS CHAR), CAST(code_ref AS CHAR) \
             FROM error_report ORDER BY id"
        }
    };
    let reports = table(&mut conn, "error_report", sql, |r| {
        Ok(ReportRow {
            id: text(r, 0)?.unwrap_or_default(),
            time: text(r, 1)?,
            message: text(r, 2)?,
            code_ref: text(r, 3)?,
        })
    })
    .await?;
    let _ = conn.close().await;
    Ok(Tables {
        configs,
        codes,
        tests,
        reports,
    })
}

/// A table's rows, each made into a `T` by `row`.
async fn table<T>(
    conn: &mut MySqlConnection,
    table: &'static str,
    sql: &'static str,
    row: impl Fn(&sqlx::mysql::MySqlRow) -> Result<T, sqlx::Error>,
) -> Result<Vec<T>, ReadError> {
    let rows = sqlx::query(sql)
        .fetch_all(conn)
        .await
        .map_err(|error| ReadError::Table { table, error })?;
    rows.iter()
        .map(row)
        .collect::<Result<_, _>>()
        .map_err(|error| ReadError::Table { table, error })
}
