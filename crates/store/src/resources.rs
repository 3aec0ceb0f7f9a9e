//! Named JSON documents of an account in a region, by kind (templates, configuration sets,
//! contact lists, contacts, tags): one table, because what varies is SES's shape of each, which
//! the service layer owns.

use rusqlite::{Connection, OptionalExtension, params};

use crate::{Result, StoreError};

/// One stored document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doc {
    /// Its name, unique per (account, region, kind).
    pub name: String,
    /// The document, JSON.
    pub doc: String,
    /// When it was created, Unix milliseconds.
    pub created_ms: i64,
    /// When it was last written, Unix milliseconds.
    pub updated_ms: i64,
}

/// Where a document lives: (account id, region, kind).
pub type Scope<'a> = (i64, &'a str, &'a str);

/// How [`put`] treats an existing document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// Fail with [`StoreError::Conflict`] if it exists.
    Create,
    /// Fail with [`StoreError::NotFound`] if it does not exist.
    Update,
    /// Either.
    Upsert,
    /// As `Create`, and fail with [`StoreError::Limit`] if the scope already holds this many.
    CreateWithin(usize),
}

/// Write a document; `what` names it in errors ("Template x").
pub fn put(c: &Connection, scope: Scope<'_>, name: &str, doc: &str, now_ms: i64, mode: Put, what: &str) -> Result<()> {
    let (account_id, region, kind) = scope;
    let exists = get(c, scope, name)?.is_some();
    match (mode, exists) {
        (Put::Create | Put::CreateWithin(_), true) => {
            return Err(StoreError::Conflict(format!("{what} already exists.")));
        }
        (Put::Update, false) => return Err(StoreError::NotFound(format!("{what} does not exist."))),
        (Put::CreateWithin(limit), false) if count(c, scope)? >= limit => {
            return Err(StoreError::Limit(format!(
                "{what} cannot be created: an account may have at most {limit} in a region."
            )));
        }
        _ => {}
    }
    c.prepare_cached(
        "INSERT INTO resources (account_id, region, kind, name, doc, created_ms, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
         ON CONFLICT (account_id, region, kind, name) DO UPDATE SET doc = excluded.doc,
           updated_ms = excluded.updated_ms",
    )?
    .execute(params![account_id, region, kind, name, doc, now_ms])?;
    Ok(())
}

/// How many documents the scope holds.
pub fn count(c: &Connection, scope: Scope<'_>) -> Result<usize> {
    let (account_id, region, kind) = scope;
    let n: i64 = c
        .prepare_cached("SELECT count(*) FROM resources WHERE account_id = ?1 AND region = ?2 AND kind = ?3")?
        .query_row(params![account_id, region, kind], |r| r.get(0))?;
    Ok(n as usize)
}

/// The names and creation times of the scope's documents, by name, without the documents.
pub fn names(c: &Connection, scope: Scope<'_>) -> Result<Vec<(String, i64)>> {
    let (account_id, region, kind) = scope;
    let mut st = c.prepare_cached(
        "SELECT name, created_ms FROM resources WHERE account_id = ?1 AND region = ?2 AND kind = ?3 ORDER BY name",
    )?;
    let rows = st.query_map(params![account_id, region, kind], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// One document.
pub fn get(c: &Connection, scope: Scope<'_>, name: &str) -> Result<Option<Doc>> {
    let (account_id, region, kind) = scope;
    Ok(c.prepare_cached(
        "SELECT name, doc, created_ms, updated_ms FROM resources
         WHERE account_id = ?1 AND region = ?2 AND kind = ?3 AND name = ?4",
    )?
    .query_row(params![account_id, region, kind, name], row)
    .optional()?)
}

/// Every document of a kind, by name.
pub fn list(c: &Connection, scope: Scope<'_>) -> Result<Vec<Doc>> {
    let (account_id, region, kind) = scope;
    let mut st = c.prepare_cached(
        "SELECT name, doc, created_ms, updated_ms FROM resources
         WHERE account_id = ?1 AND region = ?2 AND kind = ?3 ORDER BY name",
    )?;
    let rows = st.query_map(params![account_id, region, kind], row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Every document of every account and region of a kind: (account id, region, doc).
pub fn list_all(c: &Connection, kind: &str) -> Result<Vec<(i64, String, Doc)>> {
    let mut st =
        c.prepare("SELECT account_id, region, name, doc, created_ms, updated_ms FROM resources WHERE kind = ?1")?;
    let rows = st.query_map(params![kind], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            Doc { name: r.get(2)?, doc: r.get(3)?, created_ms: r.get(4)?, updated_ms: r.get(5)? },
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Every document of every account (row id above 0: not the node's own records), with its kind:
/// (account id, region, kind, doc).
pub fn list_accounts_docs(c: &Connection) -> Result<Vec<(i64, String, String, Doc)>> {
    let mut st = c.prepare(
        "SELECT account_id, region, kind, name, doc, created_ms, updated_ms FROM resources WHERE account_id > 0",
    )?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            Doc { name: r.get(3)?, doc: r.get(4)?, created_ms: r.get(5)?, updated_ms: r.get(6)? },
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Remove a document; [`StoreError::NotFound`] if there was none.
pub fn delete(c: &Connection, scope: Scope<'_>, name: &str, what: &str) -> Result<()> {
    let (account_id, region, kind) = scope;
    let n = c.execute(
        "DELETE FROM resources WHERE account_id = ?1 AND region = ?2 AND kind = ?3 AND name = ?4",
        params![account_id, region, kind, name],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("{what} does not exist.")));
    }
    Ok(())
}

/// Remove every document of a kind (the contacts of a deleted list, say).
pub fn delete_kind(c: &Connection, scope: Scope<'_>) -> Result<usize> {
    let (account_id, region, kind) = scope;
    Ok(c.execute(
        "DELETE FROM resources WHERE account_id = ?1 AND region = ?2 AND kind = ?3",
        params![account_id, region, kind],
    )?)
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Doc> {
    Ok(Doc { name: r.get(0)?, doc: r.get(1)?, created_ms: r.get(2)?, updated_ms: r.get(3)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        let c = Connection::open_in_memory().expect("memory db");
        crate::schema::migrate(&c).expect("schema");
        c
    }

    #[test]
    fn create_refuses_an_existing_name_and_update_a_missing_one() {
        let c = conn();
        let s = (1, "us-east-1", "template");
        put(&c, s, "a", "{}", 1, Put::Create, "Template a").expect("create");
        let e = put(&c, s, "a", "{}", 2, Put::Create, "Template a").expect_err("dup");
        assert_eq!(e.to_string(), "Template a already exists.");
        let e = put(&c, s, "b", "{}", 2, Put::Update, "Template b").expect_err("missing");
        assert_eq!(e.to_string(), "Template b does not exist.");
        put(&c, s, "a", "{\"x\":1}", 3, Put::Update, "Template a").expect("update");
        let d = get(&c, s, "a").expect("get").expect("some");
        assert_eq!((d.doc.as_str(), d.created_ms, d.updated_ms), ("{\"x\":1}", 1, 3));
    }

    #[test]
    fn documents_are_scoped_by_account_region_and_kind() {
        let c = conn();
        put(&c, (1, "us-east-1", "template"), "a", "1", 1, Put::Create, "t").expect("put");
        put(&c, (1, "eu-west-1", "template"), "a", "2", 1, Put::Create, "t").expect("put");
        put(&c, (2, "us-east-1", "template"), "a", "3", 1, Put::Create, "t").expect("put");
        put(&c, (1, "us-east-1", "configuration-set"), "a", "4", 1, Put::Create, "t").expect("put");
        let l = list(&c, (1, "us-east-1", "template")).expect("list");
        assert_eq!(l.iter().map(|d| d.doc.as_str()).collect::<Vec<_>>(), vec!["1"]);
        delete(&c, (1, "us-east-1", "template"), "a", "t").expect("delete");
        assert!(delete(&c, (1, "us-east-1", "template"), "a", "Template a").is_err());
        assert_eq!(list_all(&c, "template").expect("all").len(), 2);
    }
}
