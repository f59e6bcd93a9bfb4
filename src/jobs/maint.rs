//! One maintenance round: the operations `pgq.maint_operations()` lists (rotation,
//! vacuum, cascade watermarks, extra maintenance functions), or the older fixed list
//! for a pgq without it. Each operation runs in its own transaction.

use tracing::{info, warn};

use crate::pg::{PgError, Session, first_int};

use super::{Job, Limits};

/// Whether this pgq has `maint_operations()` (pgq >= 3.1).
const HAS_MAINT_OPERATIONS: &str = "select 1 from pg_proc p, pg_namespace n where p.pronamespace = n.oid and p.proname = 'maint_operations' and n.nspname = 'pgq'";
const MAINT_OPERATIONS: &str = "select func_name, func_arg from pgq.maint_operations()";
/// The fallback path for pgq without maint_operations().
const OLD_QUEUES: &str = "select queue_name from pgq.get_queue_info()";
const OLD_ROTATE_STEP1: &str = "select pgq.maint_rotate_tables_step1($1)";
const OLD_ROTATE_STEP2: &str = "select pgq.maint_rotate_tables_step2()";
const OLD_TABLES_TO_VACUUM: &str = "select * from pgq.maint_tables_to_vacuum()";

/// An operation that keeps answering "again" is cut off after this many calls
/// (pgqd 3.5 would loop forever).
pub const MAX_REPEAT: usize = 1000;
/// PostgreSQL's identifier length limit (NAMEDATALEN - 1).
const MAX_IDENT_BYTES: usize = 63;

/// One planned operation, as SQL text with at most one text parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// `vacuum [analyze] "schema"."table"`, outside any transaction block.
    Vacuum { sql: String },
    /// `select "schema"."func"($1)` (or `()`), repeated while it returns non-zero.
    Call { sql: String, arg: Option<String> },
}

/// Turns a `maint_operations()` row into SQL, or says why it is refused. Names are
/// quoted as (schema-qualified) identifiers, never pasted: a name that is not a valid
/// identifier is skipped.
pub fn plan(func_name: &str, func_arg: Option<&str>) -> Result<Operation, String> {
    let lower = func_name.to_ascii_lowercase();
    if lower == "vacuum" || lower == "vacuum analyze" {
        let table =
            func_arg.ok_or_else(|| format!("Bad table name? - {func_name} without a table"))?;
        let quoted = quote_fqident(table).ok_or_else(|| format!("Bad table name? - {table:?}"))?;
        return Ok(Operation::Vacuum {
            sql: format!("{lower} {quoted}"),
        });
    }
    let quoted =
        quote_fqident(func_name).ok_or_else(|| format!("Bad func name? - {func_name:?}"))?;
    let sql = match func_arg {
        Some(_) => format!("select {quoted}($1)"),
        None => format!("select {quoted}()"),
    };
    Ok(Operation::Call {
        sql,
        arg: func_arg.map(str::to_string),
    })
}

/// `schema.name` quoted as `"schema"."name"`, split at the first dot; a name without a
/// schema gets `public`, as pgqd 3.5 does. `None` for names that cannot be identifiers.
pub fn quote_fqident(name: &str) -> Option<String> {
    let (schema, object) = name.split_once('.').unwrap_or(("public", name));
    Some(format!("{}.{}", quote_ident(schema)?, quote_ident(object)?))
}

fn quote_ident(part: &str) -> Option<String> {
    let valid =
        !part.is_empty() && part.len() <= MAX_IDENT_BYTES && !part.chars().any(char::is_control);
    valid.then(|| format!("\"{}\"", part.replace('"', "\"\"")))
}

/// The operations of one round: the list `pgq.maint_operations()` gives, or, for a pgq
/// without it, the vacuums it asks for after rotating every queue at once.
pub async fn operations(session: &Session, limits: &Limits<'_>) -> Result<Vec<Operation>, PgError> {
    let has_list = !session
        .query(HAS_MAINT_OPERATIONS, &[], limits.timeout, limits.shutdown)
        .await?
        .is_empty();
    if has_list {
        listed(session, limits).await
    } else {
        old_style(session, limits).await
    }
}

/// One call of an operation; `true` when it asks to be called again (a function
/// that returned non-zero). A vacuum is one statement.
pub async fn call(
    session: &Session,
    limits: &Limits<'_>,
    operation: &Operation,
) -> Result<bool, PgError> {
    match operation {
        Operation::Vacuum { sql } => {
            session
                .execute_simple(sql, limits.timeout, limits.shutdown)
                .await?;
            Ok(false)
        }
        Operation::Call { sql, arg } => {
            let rows = session
                .query(sql, &[arg.as_deref()], limits.timeout, limits.shutdown)
                .await?;
            Ok(first_int(&rows) != 0 && !limits.shutdown.is_cancelled())
        }
    }
}

/// Logs a failed operation (`repeated` says how many identical failures were not
/// logged); the rest of the list still runs.
pub fn log_failure(operation: &Operation, error: &PgError, repeated: &str) {
    warn!(
        job = %Job::Maint,
        sqlstate = error.sqlstate(),
        query = describe(operation),
        "maintenance operation failed: {error}{repeated}"
    );
}

/// Logs an operation cut off after [`MAX_REPEAT`] calls.
pub fn log_cut_off(operation: &Operation) {
    info!(
        job = %Job::Maint,
        query = describe(operation),
        "operation still asks for more after {MAX_REPEAT} calls; going on with the next one"
    );
}

async fn listed(session: &Session, limits: &Limits<'_>) -> Result<Vec<Operation>, PgError> {
    let rows = session
        .query(MAINT_OPERATIONS, &[], limits.timeout, limits.shutdown)
        .await?;
    let mut operations = Vec::new();
    for row in rows {
        let name: Option<String> = row.try_get(0).ok().flatten();
        let arg: Option<String> = row.try_get(1).ok().flatten();
        match plan(name.as_deref().unwrap_or_default(), arg.as_deref()) {
            Ok(op) => operations.push(op),
            Err(reason) => warn!(job = %Job::Maint, "{reason}, skipped"),
        }
    }
    Ok(operations)
}

/// pgq before 3.1: rotate every queue now, then return the vacuums pgq asks for.
async fn old_style(session: &Session, limits: &Limits<'_>) -> Result<Vec<Operation>, PgError> {
    let queues = session
        .query(OLD_QUEUES, &[], limits.timeout, limits.shutdown)
        .await?;
    for row in &queues {
        let step1 = Operation::Call {
            sql: OLD_ROTATE_STEP1.into(),
            arg: row.try_get(0).ok(),
        };
        run(session, limits, &step1, 0).await?;
    }
    let step2 = Operation::Call {
        sql: OLD_ROTATE_STEP2.into(),
        arg: None,
    };
    run(session, limits, &step2, 0).await?;
    let tables = session
        .query(OLD_TABLES_TO_VACUUM, &[], limits.timeout, limits.shutdown)
        .await?;
    let mut operations = Vec::new();
    for row in tables {
        let table: Option<String> = row.try_get(0).ok().flatten();
        match plan("vacuum", table.as_deref()) {
            Ok(op) => operations.push(op),
            Err(reason) => warn!(job = %Job::Maint, "{reason}, skipped"),
        }
    }
    Ok(operations)
}

/// Runs one operation to its end, calling it again while it answers non-zero;
/// `calls` were already made (elsewhere) and count towards the cut-off.
pub async fn run(
    session: &Session,
    limits: &Limits<'_>,
    operation: &Operation,
    mut calls: usize,
) -> Result<(), PgError> {
    while call(session, limits, operation).await? {
        calls += 1;
        if calls >= MAX_REPEAT {
            log_cut_off(operation);
            break;
        }
    }
    Ok(())
}

pub fn describe(operation: &Operation) -> String {
    match operation {
        Operation::Vacuum { sql } => sql.clone(),
        Operation::Call {
            sql,
            arg: Some(arg),
        } => format!("{sql} [$1 = {arg:?}]"),
        Operation::Call { sql, arg: None } => sql.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Function names are quoted as schema-qualified identifiers, split at the first dot.
    #[test]
    fn quoting() {
        assert_eq!(
            quote_fqident("pgq.maint_rotate_tables_step1").unwrap(),
            "\"pgq\".\"maint_rotate_tables_step1\""
        );
        assert_eq!(quote_fqident("my_func").unwrap(), "\"public\".\"my_func\"");
        assert_eq!(quote_fqident("a.b.c").unwrap(), "\"a\".\"b.c\"");
        assert_eq!(
            quote_fqident("s.Odd\"Name").unwrap(),
            "\"s\".\"Odd\"\"Name\""
        );
    }

    /// Names that cannot be identifiers are refused, never executed.
    #[test]
    fn bad_names() {
        for bad in ["", ".x", "x.", "a\nb", "a;\u{0}", &"x".repeat(64)] {
            assert!(quote_fqident(bad).is_none(), "{bad:?}");
        }
        assert!(plan("x.", None).unwrap_err().starts_with("Bad func name?"));
        assert!(
            plan("vacuum", Some("a\nb"))
                .unwrap_err()
                .starts_with("Bad table name?")
        );
        assert!(plan("vacuum", None).is_err());
    }

    /// vacuum and vacuum analyze (any case) become statements; others become calls.
    #[test]
    fn planning() {
        assert_eq!(
            plan("VACUUM", Some("pgq.event_1_0")).unwrap(),
            Operation::Vacuum {
                sql: "vacuum \"pgq\".\"event_1_0\"".into()
            }
        );
        assert_eq!(
            plan("Vacuum Analyze", Some("t")).unwrap(),
            Operation::Vacuum {
                sql: "vacuum analyze \"public\".\"t\"".into()
            }
        );
        assert_eq!(
            plan("pgq.maint_rotate_tables_step1", Some("q1")).unwrap(),
            Operation::Call {
                sql: "select \"pgq\".\"maint_rotate_tables_step1\"($1)".into(),
                arg: Some("q1".into())
            }
        );
        assert_eq!(
            plan("pgq.maint_rotate_tables_step2", None).unwrap(),
            Operation::Call {
                sql: "select \"pgq\".\"maint_rotate_tables_step2\"()".into(),
                arg: None
            }
        );
    }
}
