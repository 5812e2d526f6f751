//! The [`Index`] on SQLite: one file, write-ahead log, versioned migrations, prepared statements.
//!
//! One writer connection (behind a mutex: SQLite has one writer anyway) and a small pool of
//! reader connections, which the write-ahead log lets run beside the writer. Commits use
//! `synchronous=FULL`, so a returned `insert` survives power loss.
//!
//! Queries are translated to SQL by `translate`, which mirrors the reference matcher of
//! `pacs_core::matching` rule by rule; a property test checks that they agree.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use pacs_core::attribute::{Attribute, ValueKind};
use pacs_core::index::{DuplicatePolicy, InsertOutcome, Scope, Stats};
use pacs_core::query::{Matcher, Query, QueryLevel, QueryRow};
use pacs_core::scan::PixelLayout;
use pacs_core::{BlobKey, Error, Index, InstanceRecord, Original, Result, Uid};
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};

/// The schema, one migration per version. Never edit a released migration: add one.
const MIGRATIONS: &[&str] = &[
    // 1: the four levels.
    "CREATE TABLE patients (
        pk INTEGER PRIMARY KEY,
        patient_id TEXT NOT NULL,
        issuer TEXT NOT NULL,
        patient_name TEXT,
        patient_name_ci TEXT,
        birth_date TEXT,
        sex TEXT
    );
    -- A patient is its (Patient ID, Issuer); objects without a Patient ID get a patient per
    -- study, so that unrelated anonymous studies are not merged into one patient.
    CREATE UNIQUE INDEX patients_key ON patients (patient_id, issuer) WHERE patient_id <> '';
    CREATE INDEX patients_id ON patients (patient_id, issuer);
    CREATE INDEX patients_name ON patients (patient_name);
    CREATE INDEX patients_name_ci ON patients (patient_name_ci);
    CREATE TABLE studies (
        pk INTEGER PRIMARY KEY,
        patient_pk INTEGER NOT NULL REFERENCES patients (pk),
        study_uid TEXT NOT NULL UNIQUE,
        study_date TEXT,
        study_time TEXT,
        accession TEXT,
        study_id TEXT,
        description TEXT,
        referring TEXT,
        referring_ci TEXT
    );
    CREATE INDEX studies_patient ON studies (patient_pk);
    CREATE INDEX studies_date ON studies (study_date);
    CREATE INDEX studies_accession ON studies (accession);
    CREATE TABLE series (
        pk INTEGER PRIMARY KEY,
        study_pk INTEGER NOT NULL REFERENCES studies (pk),
        series_uid TEXT NOT NULL UNIQUE,
        modality TEXT,
        series_number INTEGER,
        description TEXT,
        body_part TEXT,
        series_date TEXT
    );
    CREATE INDEX series_study ON series (study_pk);
    CREATE INDEX series_modality ON series (modality);
    CREATE TABLE instances (
        pk INTEGER PRIMARY KEY,
        series_pk INTEGER NOT NULL REFERENCES series (pk),
        sop_uid TEXT NOT NULL UNIQUE,
        sop_class TEXT NOT NULL,
        instance_number INTEGER,
        transfer_syntax TEXT NOT NULL,
        frames INTEGER,
        rows INTEGER,
        columns INTEGER,
        size INTEGER NOT NULL,
        checksum TEXT NOT NULL,
        blob TEXT NOT NULL,
        pixel BLOB,
        frame_size INTEGER,
        stored_at INTEGER NOT NULL DEFAULT (unixepoch())
    );
    CREATE INDEX instances_series ON instances (series_pk);",
    // 2: the object as received, when the stored bytes are a conversion of it (compression on
    // ingest). NULL: the stored bytes are those received.
    "ALTER TABLE instances ADD COLUMN original_size INTEGER;
    ALTER TABLE instances ADD COLUMN original_checksum TEXT;
    ALTER TABLE instances ADD COLUMN original_transfer_syntax TEXT;",
];

/// Where an attribute lives: table alias and column.
fn column(attribute: Attribute) -> Option<(&'static str, &'static str)> {
    use Attribute::*;
    Some(match attribute {
        PatientId => ("p", "patient_id"),
        IssuerOfPatientId => ("p", "issuer"),
        PatientName => ("p", "patient_name"),
        PatientBirthDate => ("p", "birth_date"),
        PatientSex => ("p", "sex"),
        StudyInstanceUid => ("st", "study_uid"),
        StudyDate => ("st", "study_date"),
        StudyTime => ("st", "study_time"),
        AccessionNumber => ("st", "accession"),
        StudyId => ("st", "study_id"),
        StudyDescription => ("st", "description"),
        ReferringPhysicianName => ("st", "referring"),
        SeriesInstanceUid => ("se", "series_uid"),
        Modality => ("se", "modality"),
        SeriesNumber => ("se", "series_number"),
        SeriesDescription => ("se", "description"),
        BodyPartExamined => ("se", "body_part"),
        SeriesDate => ("se", "series_date"),
        SopInstanceUid => ("i", "sop_uid"),
        SopClassUid => ("i", "sop_class"),
        InstanceNumber => ("i", "instance_number"),
        TransferSyntaxUid => ("i", "transfer_syntax"),
        NumberOfFrames => ("i", "frames"),
        Rows => ("i", "rows"),
        Columns => ("i", "columns"),
        _ => return None,
    })
}

/// The SQL expression of an attribute's value at a level (derived attributes are subqueries).
fn expression(attribute: Attribute) -> String {
    match attribute {
        Attribute::ModalitiesInStudy => {
            "(SELECT group_concat(m, '\\') FROM (SELECT DISTINCT modality AS m FROM series WHERE study_pk = st.pk AND modality IS NOT NULL ORDER BY m))".into()
        }
        Attribute::NumberOfStudyRelatedSeries => "(SELECT COUNT(*) FROM series WHERE study_pk = st.pk)".into(),
        Attribute::NumberOfStudyRelatedInstances => {
            "(SELECT COUNT(*) FROM instances JOIN series x ON instances.series_pk = x.pk WHERE x.study_pk = st.pk)".into()
        }
        Attribute::NumberOfSeriesRelatedInstances => "(SELECT COUNT(*) FROM instances WHERE series_pk = se.pk)".into(),
        other => match column(other) {
            Some((table, col)) => format!("{table}.{col}"),
            None => "NULL".into(),
        },
    }
}

/// The case-folded column of a Person Name attribute.
fn folded_column(attribute: Attribute) -> Option<&'static str> {
    match attribute {
        Attribute::PatientName => Some("p.patient_name_ci"),
        Attribute::ReferringPhysicianName => Some("st.referring_ci"),
        _ => None,
    }
}

/// Case folding shared by the folded columns and the query operands.
pub(crate) fn fold(text: &str) -> String {
    text.to_lowercase()
}

/// A DICOM wildcard pattern as a SQLite GLOB pattern: `*` and `?` mean the same; `[` is escaped.
fn glob(pattern: &str) -> String {
    pattern.replace('[', "[[]")
}

fn from_clause(level: QueryLevel) -> &'static str {
    match level {
        QueryLevel::Patient => "patients p",
        QueryLevel::Study => "studies st JOIN patients p ON p.pk = st.patient_pk",
        QueryLevel::Series => "series se JOIN studies st ON st.pk = se.study_pk JOIN patients p ON p.pk = st.patient_pk",
        QueryLevel::Instance => {
            "instances i JOIN series se ON se.pk = i.series_pk JOIN studies st ON st.pk = se.study_pk JOIN patients p ON p.pk = st.patient_pk"
        }
    }
}

fn order_clause(level: QueryLevel) -> &'static str {
    match level {
        // Patients without an ID (one per study) are ordered by their study.
        QueryLevel::Patient => "p.patient_id, p.issuer, (SELECT min(study_uid) FROM studies WHERE patient_pk = p.pk)",
        QueryLevel::Study => "st.study_uid",
        QueryLevel::Series => "se.series_uid",
        QueryLevel::Instance => "i.sop_uid",
    }
}

fn int_param(attribute: Attribute, text: &str) -> Value {
    if attribute.kind() == ValueKind::Integer
        && let Ok(n) = text.parse::<i64>()
    {
        return Value::Integer(n);
    }
    Value::Text(text.to_owned())
}

/// One SQL condition for one key, appended to `sql` with its parameters.
fn condition(query: &Query, attribute: Attribute, matcher: &Matcher, params: &mut Vec<Value>) -> Option<String> {
    let fold_pn = query.options.case_insensitive_pn && attribute.kind() == ValueKind::PersonName;
    if attribute == Attribute::ModalitiesInStudy {
        // Multi-valued: any series' modality matches.
        let inner = match matcher {
            Matcher::Universal => return None,
            Matcher::Empty => return Some("NOT EXISTS (SELECT 1 FROM series WHERE study_pk = st.pk AND modality IS NOT NULL AND modality <> '')".into()),
            Matcher::Single(v) => {
                params.push(Value::Text(v.clone()));
                "modality = ?".to_owned()
            }
            Matcher::Wildcard(p) => {
                params.push(Value::Text(glob(p)));
                "modality GLOB ?".to_owned()
            }
            Matcher::UidList(list) => {
                params.extend(list.iter().map(|v| Value::Text(v.clone())));
                format!("modality IN ({})", vec!["?"; list.len()].join(", "))
            }
            Matcher::Range { .. } => return Some("0".into()),
        };
        return Some(format!("EXISTS (SELECT 1 FROM series WHERE study_pk = st.pk AND {inner})"));
    }
    let expr = match (fold_pn, folded_column(attribute)) {
        (true, Some(col)) => col.to_owned(),
        _ => expression(attribute),
    };
    if multi_valued(attribute) {
        // The column holds the values joined with `\`: the key matches when any value does
        // (PS3.4 C.2.2.3), and an empty value among them is no value (see `pacs_core::matching`).
        if *matcher == Matcher::Empty {
            return Some(format!("({expr} IS NULL OR {expr} = '' OR instr('\\' || {expr} || '\\', '\\\\') > 0)"));
        }
        let per_value = value_condition("item", attribute, matcher, fold_pn, params)?;
        return Some(format!(
            "EXISTS (WITH RECURSIVE parts(item, rest) AS (SELECT NULL, {expr} || '\\' \
             UNION ALL SELECT substr(rest, 1, instr(rest, '\\') - 1), substr(rest, instr(rest, '\\') + 1) FROM parts WHERE rest <> '') \
             SELECT 1 FROM parts WHERE item <> '' AND {per_value})"
        ));
    }
    value_condition(&expr, attribute, matcher, fold_pn, params)
}

/// Indexed attributes whose Value Multiplicity allows several values (Referring Physician's
/// Name is 1-n), stored joined with `\`. ModalitiesInStudy, derived from the series, is matched
/// apart. The other indexed attributes have VM 1 and are compared as one value.
fn multi_valued(attribute: Attribute) -> bool {
    attribute == Attribute::ReferringPhysicianName
}

/// The SQL condition of one key on a single-valued expression.
fn value_condition(expr: &str, attribute: Attribute, matcher: &Matcher, fold_pn: bool, params: &mut Vec<Value>) -> Option<String> {
    let operand = |v: &str| if fold_pn { fold(v) } else { v.to_owned() };
    Some(match matcher {
        Matcher::Universal => return None,
        Matcher::Empty => format!("({expr} IS NULL OR {expr} = '')"),
        Matcher::Single(v) => {
            params.push(int_param(attribute, &operand(v)));
            format!("{expr} = ?")
        }
        Matcher::Wildcard(p) => {
            // Absent values (NULL, or the empty Patient ID) match no wildcard, not even `**`.
            params.push(Value::Text(glob(&operand(p))));
            format!("({expr} <> '' AND CAST({expr} AS TEXT) GLOB ?)")
        }
        Matcher::UidList(list) => {
            params.extend(list.iter().map(|v| int_param(attribute, v)));
            format!("{expr} IN ({})", vec!["?"; list.len()].join(", "))
        }
        Matcher::Range { lo, hi } => {
            let mut parts = vec![format!("{expr} IS NOT NULL")];
            if let Some(lo) = lo {
                params.push(Value::Text(lo.clone()));
                parts.push(format!("{expr} >= ?"));
            }
            if let Some(hi) = hi {
                params.push(Value::Text(hi.clone()));
                parts.push(format!("{expr} <= ?"));
            }
            format!("({})", parts.join(" AND "))
        }
    })
}

/// Translates a query to SQL: the statement, its parameters, and the attributes of the columns
/// it returns, in order.
pub(crate) fn translate(query: &Query) -> (String, Vec<Value>, Vec<Attribute>) {
    let returned = query.return_attributes();
    let columns: Vec<String> = returned.iter().map(|a| expression(*a)).collect();
    let mut params = Vec::new();
    let mut conditions = Vec::new();
    let combined = match (query.key(Attribute::StudyDate), query.key(Attribute::StudyTime)) {
        (Some(Matcher::Range { lo: dlo, hi: dhi }), Some(Matcher::Range { lo: tlo, hi: thi })) if query.options.combine_datetime => {
            // One range over date and time together (PS3.4 C.2.2.2.5.1).
            let expr = "(st.study_date || coalesce(st.study_time, '000000.000000'))";
            let mut parts = vec!["st.study_date IS NOT NULL".to_owned()];
            if let Some(d) = dlo {
                params.push(Value::Text(format!("{d}{}", tlo.as_deref().unwrap_or("000000.000000"))));
                parts.push(format!("{expr} >= ?"));
            }
            if let Some(d) = dhi {
                params.push(Value::Text(format!("{d}{}", thi.as_deref().unwrap_or("999999.999999"))));
                parts.push(format!("{expr} <= ?"));
            }
            conditions.push(format!("({})", parts.join(" AND ")));
            true
        }
        _ => false,
    };
    for key in &query.keys {
        if combined && matches!(key.attribute, Attribute::StudyDate | Attribute::StudyTime) {
            continue;
        }
        if let Some(c) = condition(query, key.attribute, &key.matcher, &mut params) {
            conditions.push(c);
        }
    }
    let mut sql = format!("SELECT {} FROM {}", columns.join(", "), from_clause(query.level));
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    sql.push_str(" ORDER BY ");
    sql.push_str(order_clause(query.level));
    match query.limit {
        Some(limit) => sql.push_str(&format!(" LIMIT {limit} OFFSET {}", query.offset)),
        None if query.offset > 0 => sql.push_str(&format!(" LIMIT -1 OFFSET {}", query.offset)),
        None => {}
    }
    (sql, params, returned)
}

const RECORD_COLUMNS: &str = "i.pk, i.sop_uid, i.sop_class, se.series_uid, st.study_uid, i.transfer_syntax, i.size, i.checksum, i.blob, i.pixel, i.frame_size, \
     p.patient_id, p.issuer, p.patient_name, p.birth_date, p.sex, st.study_date, st.study_time, st.accession, st.study_id, st.description, st.referring, \
     se.modality, se.series_number, se.description, se.body_part, se.series_date, i.instance_number, i.frames, i.rows, i.columns, \
     i.original_size, i.original_checksum, i.original_transfer_syntax";

/// The attributes of [`RECORD_COLUMNS`] from column 11 on, in order.
const RECORD_ATTRIBUTES: &[Attribute] = &[
    Attribute::PatientId,
    Attribute::IssuerOfPatientId,
    Attribute::PatientName,
    Attribute::PatientBirthDate,
    Attribute::PatientSex,
    Attribute::StudyDate,
    Attribute::StudyTime,
    Attribute::AccessionNumber,
    Attribute::StudyId,
    Attribute::StudyDescription,
    Attribute::ReferringPhysicianName,
    Attribute::Modality,
    Attribute::SeriesNumber,
    Attribute::SeriesDescription,
    Attribute::BodyPartExamined,
    Attribute::SeriesDate,
    Attribute::InstanceNumber,
    Attribute::NumberOfFrames,
    Attribute::Rows,
    Attribute::Columns,
];

fn text_of(value: Value) -> Option<String> {
    match value {
        Value::Text(t) if !t.is_empty() => Some(t),
        Value::Integer(n) => Some(n.to_string()),
        Value::Real(r) => Some(r.to_string()),
        _ => None,
    }
}

fn corrupt(what: String) -> Error {
    Error::Corrupt { what }
}

fn record_from_row(row: &Row<'_>) -> rusqlite::Result<std::result::Result<InstanceRecord, Error>> {
    let text = |i: usize| row.get::<_, String>(i);
    let (sop, class, series, study, ts) = (text(1)?, text(2)?, text(3)?, text(4)?, text(5)?);
    let size: i64 = row.get(6)?;
    let checksum = text(7)?;
    let blob = text(8)?;
    let pixel: Option<Vec<u8>> = row.get(9)?;
    let frame_size: Option<i64> = row.get(10)?;
    let mut attributes = QueryRow::new();
    for (offset, attribute) in RECORD_ATTRIBUTES.iter().enumerate() {
        if let Some(v) = text_of(row.get::<_, Value>(11 + offset)?) {
            attributes.insert(*attribute, v);
        }
    }
    let at = 11 + RECORD_ATTRIBUTES.len();
    let original: (Option<i64>, Option<String>, Option<String>) = (row.get(at)?, row.get(at + 1)?, row.get(at + 2)?);
    let build = || -> std::result::Result<InstanceRecord, Error> {
        let uid = |s: &str| Uid::new(s);
        attributes.insert(Attribute::SopInstanceUid, sop.clone());
        attributes.insert(Attribute::SopClassUid, class.clone());
        attributes.insert(Attribute::SeriesInstanceUid, series.clone());
        attributes.insert(Attribute::StudyInstanceUid, study.clone());
        attributes.insert(Attribute::TransferSyntaxUid, ts.clone());
        Ok(InstanceRecord {
            sop_instance_uid: uid(&sop)?,
            sop_class_uid: uid(&class)?,
            series_instance_uid: uid(&series)?,
            study_instance_uid: uid(&study)?,
            transfer_syntax_uid: uid(&ts)?,
            attributes: std::mem::take(&mut attributes),
            pixel: decode_pixel(pixel.as_deref()).ok_or_else(|| corrupt(format!("pixel layout of {sop}")))?,
            frame_size: frame_size.map(|n| n as u64),
            size: size as u64,
            checksum,
            blob: BlobKey::new(blob)?,
            original: match original {
                (Some(size), Some(checksum), Some(ts)) => Some(Original { size: size as u64, checksum, transfer_syntax_uid: uid(&ts)? }),
                _ => None,
            },
        })
    };
    Ok(build())
}

/// Serialises a pixel layout: `0` unknown; `1` native offset, length; `2` encapsulated count,
/// fragments (offset u64, length u32), table count, table (u32). Little endian.
pub(crate) fn encode_pixel(pixel: &PixelLayout) -> Option<Vec<u8>> {
    match pixel {
        PixelLayout::Unknown => None,
        PixelLayout::Native { offset, length } => {
            let mut out = vec![1u8];
            out.extend_from_slice(&offset.to_le_bytes());
            out.extend_from_slice(&length.to_le_bytes());
            Some(out)
        }
        PixelLayout::Encapsulated { fragments, offset_table } => {
            let mut out = Vec::with_capacity(9 + fragments.len() * 12 + offset_table.len() * 4);
            out.push(2u8);
            out.extend_from_slice(&(fragments.len() as u32).to_le_bytes());
            for (off, len) in fragments {
                out.extend_from_slice(&off.to_le_bytes());
                out.extend_from_slice(&len.to_le_bytes());
            }
            out.extend_from_slice(&(offset_table.len() as u32).to_le_bytes());
            for o in offset_table {
                out.extend_from_slice(&o.to_le_bytes());
            }
            Some(out)
        }
    }
}

/// The inverse of [`encode_pixel`]; `None` when the bytes are corrupt.
pub(crate) fn decode_pixel(bytes: Option<&[u8]>) -> Option<PixelLayout> {
    let Some(bytes) = bytes else { return Some(PixelLayout::Unknown) };
    let mut at = 1usize;
    let mut take = |n: usize| -> Option<&[u8]> {
        let s = bytes.get(at..at + n)?;
        at += n;
        Some(s)
    };
    let u64_ = |b: &[u8]| b.try_into().ok().map(u64::from_le_bytes);
    let u32_ = |b: &[u8]| b.try_into().ok().map(u32::from_le_bytes);
    match bytes.first()? {
        1 => Some(PixelLayout::Native { offset: u64_(take(8)?)?, length: u64_(take(8)?)? }),
        2 => {
            let n = u32_(take(4)?)? as usize;
            let mut fragments = Vec::with_capacity(n.min(1 << 20));
            for _ in 0..n {
                fragments.push((u64_(take(8)?)?, u32_(take(4)?)?));
            }
            let m = u32_(take(4)?)? as usize;
            let mut offset_table = Vec::with_capacity(m.min(1 << 20));
            for _ in 0..m {
                offset_table.push(u32_(take(4)?)?);
            }
            Some(PixelLayout::Encapsulated { fragments, offset_table })
        }
        _ => None,
    }
}

/// The SQLite index.
pub struct SqliteIndex {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

impl SqliteIndex {
    /// Opens (creating if needed) the index file at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteIndex> {
        let index = SqliteIndex { path: path.to_path_buf(), writer: Mutex::new(Self::connect(path, true)?), readers: Mutex::new(Vec::new()) };
        index.migrate()?;
        Ok(index)
    }

    fn unavailable(&self, action: &str, e: rusqlite::Error) -> Error {
        map_error(&self.path, action, e)
    }

    fn connect(path: &Path, create: bool) -> Result<Connection> {
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let conn = Connection::open_with_flags(path, flags).map_err(|e| map_error(path, "opening", e))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = 10000;
             PRAGMA cache_size = -65536;
             PRAGMA temp_store = MEMORY;",
        )
        .map_err(|e| map_error(path, "configuring", e))?;
        // A stable query planner: plans do not depend on bound values. Without it, the bundled
        // SQLite (built with STAT4) recompiles a cached statement whenever a new value is bound
        // to a parameter that may change its plan, which costs more than a small query itself.
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map_err(|e| map_error(path, "configuring", e))?;
        Ok(conn)
    }

    fn migrate(&self) -> Result<()> {
        let mut conn = self.lock_writer();
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| self.unavailable("reading the schema version of", e))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(Error::Corrupt { what: format!("index {} has schema version {version}, newer than this program's {known}", self.path.display()) });
        }
        let quick: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(|e| self.unavailable("checking", e))?;
        if quick != "ok" {
            return Err(Error::Corrupt { what: format!("index {} failed its integrity check: {quick}", self.path.display()) });
        }
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction().map_err(|e| self.unavailable("migrating", e))?;
            tx.execute_batch(migration).map_err(|e| self.unavailable("migrating", e))?;
            tx.pragma_update(None, "user_version", (i + 1) as i64).map_err(|e| self.unavailable("migrating", e))?;
            tx.commit().map_err(|e| self.unavailable("migrating", e))?;
            tracing::info!(path = %self.path.display(), version = i + 1, "index schema migrated");
        }
        Ok(())
    }

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => Self::connect(&self.path, false)?,
        };
        let result = f(&conn);
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < 8 {
            pool.push(conn);
        }
        result
    }

    fn records(&self, conn: &Connection, filter: &str, param: &[&dyn rusqlite::ToSql]) -> Result<Vec<InstanceRecord>> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM {} WHERE {filter} ORDER BY se.series_number, se.series_uid, i.instance_number, i.sop_uid",
            from_clause(QueryLevel::Instance)
        );
        let mut stmt = conn.prepare_cached(&sql).map_err(|e| self.unavailable("querying", e))?;
        let rows = stmt.query_map(param, record_from_row).map_err(|e| self.unavailable("querying", e))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row.map_err(|e| self.unavailable("reading", e))??);
        }
        Ok(out)
    }

    fn scope_filter(scope: &Scope) -> (&'static str, Vec<String>) {
        match scope {
            Scope::Patient { id, issuer } => ("p.patient_id = ?1 AND p.issuer = ?2", vec![id.clone(), issuer.clone()]),
            Scope::Study(uid) => ("st.study_uid = ?1", vec![uid.to_string()]),
            Scope::Series(uid) => ("se.series_uid = ?1", vec![uid.to_string()]),
            Scope::Instance(uid) => ("i.sop_uid = ?1", vec![uid.to_string()]),
        }
    }
}

fn map_error(path: &Path, action: &str, e: rusqlite::Error) -> Error {
    if let rusqlite::Error::SqliteFailure(code, _) = &e
        && matches!(code.code, rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    {
        return Error::Corrupt { what: format!("index {}: {e}", path.display()) };
    }
    Error::Unavailable { backend: format!("SQLite index {}", path.display()), action: action.to_owned(), source: Box::new(e) }
}

fn opt(record: &InstanceRecord, attribute: Attribute) -> Option<&str> {
    record.get(attribute)
}

fn int_opt(record: &InstanceRecord, attribute: Attribute) -> Option<i64> {
    record.get(attribute).and_then(|v| v.parse().ok())
}

/// Inserts one record inside an open transaction.
fn insert_one(tx: &rusqlite::Transaction<'_>, r: &InstanceRecord, policy: DuplicatePolicy) -> rusqlite::Result<InsertOutcome> {
    let existing: Option<(i64, String, String)> = tx
        .prepare_cached("SELECT pk, checksum, blob FROM instances WHERE sop_uid = ?1")?
        .query_row([r.sop_instance_uid.as_str()], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .optional()?;
    let mut outcome = InsertOutcome::Inserted;
    if let Some((pk, checksum, blob)) = existing {
        let existing = BlobKey::new(blob).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        if checksum == r.checksum {
            return Ok(InsertOutcome::AlreadyPresent { existing });
        }
        match policy {
            DuplicatePolicy::KeepExisting => return Ok(InsertOutcome::KeptExisting { existing }),
            DuplicatePolicy::Reject => return Ok(InsertOutcome::Refused { existing }),
            DuplicatePolicy::Replace => {
                tx.prepare_cached("DELETE FROM instances WHERE pk = ?1")?.execute([pk])?;
                prune(tx)?;
                outcome = InsertOutcome::Replaced { old: existing };
            }
        }
    }
    let study: Option<i64> =
        tx.prepare_cached("SELECT pk FROM studies WHERE study_uid = ?1")?.query_row([r.study_instance_uid.as_str()], |row| row.get(0)).optional()?;
    // A known study keeps its patient: a patient is created only with a new study, so that no
    // patient is ever left without studies.
    let study_pk = match study {
        Some(pk) => pk,
        None => {
            let patient_id = opt(r, Attribute::PatientId).unwrap_or("");
            let issuer = opt(r, Attribute::IssuerOfPatientId).unwrap_or("");
            let patient_pk: Option<i64> = if patient_id.is_empty() {
                None
            } else {
                tx.prepare_cached("SELECT pk FROM patients WHERE patient_id = ?1 AND issuer = ?2")?
                    .query_row([patient_id, issuer], |row| row.get(0))
                    .optional()?
            };
            let patient_pk = match patient_pk {
                Some(pk) => pk,
                None => {
                    let name = opt(r, Attribute::PatientName);
                    tx.prepare_cached(
                        "INSERT INTO patients (patient_id, issuer, patient_name, patient_name_ci, birth_date, sex) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?
                    .execute(params![
                        patient_id,
                        issuer,
                        name,
                        name.map(fold),
                        opt(r, Attribute::PatientBirthDate),
                        opt(r, Attribute::PatientSex)
                    ])?;
                    tx.last_insert_rowid()
                }
            };
            let referring = opt(r, Attribute::ReferringPhysicianName);
            tx.prepare_cached(
                "INSERT INTO studies (patient_pk, study_uid, study_date, study_time, accession, study_id, description, referring, referring_ci)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                patient_pk,
                r.study_instance_uid.as_str(),
                opt(r, Attribute::StudyDate),
                opt(r, Attribute::StudyTime),
                opt(r, Attribute::AccessionNumber),
                opt(r, Attribute::StudyId),
                opt(r, Attribute::StudyDescription),
                referring,
                referring.map(fold),
            ])?;
            tx.last_insert_rowid()
        }
    };
    let series_pk: Option<i64> =
        tx.prepare_cached("SELECT pk FROM series WHERE series_uid = ?1")?.query_row([r.series_instance_uid.as_str()], |row| row.get(0)).optional()?;
    let series_pk = match series_pk {
        Some(pk) => pk,
        None => {
            tx.prepare_cached(
                "INSERT INTO series (study_pk, series_uid, modality, series_number, description, body_part, series_date) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                study_pk,
                r.series_instance_uid.as_str(),
                opt(r, Attribute::Modality),
                int_opt(r, Attribute::SeriesNumber),
                opt(r, Attribute::SeriesDescription),
                opt(r, Attribute::BodyPartExamined),
                opt(r, Attribute::SeriesDate),
            ])?;
            tx.last_insert_rowid()
        }
    };
    tx.prepare_cached(
        "INSERT INTO instances (series_pk, sop_uid, sop_class, instance_number, transfer_syntax, frames, rows, columns, size, checksum, blob, pixel, frame_size,
                                original_size, original_checksum, original_transfer_syntax)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    )?
    .execute(params![
        series_pk,
        r.sop_instance_uid.as_str(),
        r.sop_class_uid.as_str(),
        int_opt(r, Attribute::InstanceNumber),
        r.transfer_syntax_uid.as_str(),
        int_opt(r, Attribute::NumberOfFrames),
        int_opt(r, Attribute::Rows),
        int_opt(r, Attribute::Columns),
        r.size as i64,
        r.checksum,
        r.blob.as_str(),
        encode_pixel(&r.pixel),
        r.frame_size.map(|n| n as i64),
        r.original.as_ref().map(|o| o.size as i64),
        r.original.as_ref().map(|o| o.checksum.as_str()),
        r.original.as_ref().map(|o| o.transfer_syntax_uid.as_str()),
    ])?;
    Ok(outcome)
}

/// Removes series, studies and patients left without instances.
fn prune(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "DELETE FROM series WHERE NOT EXISTS (SELECT 1 FROM instances WHERE series_pk = series.pk);
         DELETE FROM studies WHERE NOT EXISTS (SELECT 1 FROM series WHERE study_pk = studies.pk);
         DELETE FROM patients WHERE NOT EXISTS (SELECT 1 FROM studies WHERE patient_pk = patients.pk);",
    )
}

impl Index for SqliteIndex {
    fn insert(&self, records: &[InstanceRecord], policy: DuplicatePolicy) -> Result<Vec<InsertOutcome>> {
        let mut conn = self.lock_writer();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(|e| self.unavailable("starting a transaction on", e))?;
        let mut outcomes = Vec::with_capacity(records.len());
        for r in records {
            outcomes.push(insert_one(&tx, r, policy).map_err(|e| self.unavailable(&format!("inserting {}", r.sop_instance_uid), e))?);
        }
        tx.commit().map_err(|e| self.unavailable("committing to", e))?;
        Ok(outcomes)
    }

    fn find(&self, query: &Query) -> Result<Vec<QueryRow>> {
        let (sql, params, returned) = translate(query);
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(&sql).map_err(|e| self.unavailable("preparing a query on", e))?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(params.iter()), |row| {
                    let mut out = QueryRow::new();
                    for (i, attribute) in returned.iter().enumerate() {
                        if let Some(v) = text_of(row.get::<_, Value>(i)?) {
                            out.insert(*attribute, v);
                        }
                    }
                    Ok(out)
                })
                .map_err(|e| self.unavailable("querying", e))?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.unavailable("reading", e))
        })
    }

    fn instance(&self, sop_instance_uid: &Uid) -> Result<Option<InstanceRecord>> {
        self.with_reader(|conn| Ok(self.records(conn, "i.sop_uid = ?1", &[&sop_instance_uid.as_str()])?.into_iter().next()))
    }

    fn instances(&self, scope: &Scope) -> Result<Vec<InstanceRecord>> {
        let (filter, values) = Self::scope_filter(scope);
        let params: Vec<&dyn rusqlite::ToSql> = values.iter().map(|v| v as &dyn rusqlite::ToSql).collect();
        self.with_reader(|conn| self.records(conn, filter, &params))
    }

    fn remove(&self, scope: &Scope) -> Result<Vec<InstanceRecord>> {
        let (filter, values) = Self::scope_filter(scope);
        let params: Vec<&dyn rusqlite::ToSql> = values.iter().map(|v| v as &dyn rusqlite::ToSql).collect();
        let mut conn = self.lock_writer();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(|e| self.unavailable("starting a transaction on", e))?;
        let removed = self.records(&tx, filter, &params)?;
        {
            let mut delete = tx.prepare_cached("DELETE FROM instances WHERE sop_uid = ?1").map_err(|e| self.unavailable("deleting from", e))?;
            for r in &removed {
                delete.execute([r.sop_instance_uid.as_str()]).map_err(|e| self.unavailable("deleting from", e))?;
            }
        }
        prune(&tx).map_err(|e| self.unavailable("pruning", e))?;
        tx.commit().map_err(|e| self.unavailable("committing to", e))?;
        Ok(removed)
    }

    fn stats(&self) -> Result<Stats> {
        self.with_reader(|conn| {
            conn.query_row(
                "SELECT (SELECT COUNT(*) FROM patients), (SELECT COUNT(*) FROM studies), (SELECT COUNT(*) FROM series),
                        (SELECT COUNT(*) FROM instances), (SELECT coalesce(SUM(size), 0) FROM instances)",
                [],
                |r| {
                    Ok(Stats {
                        patients: r.get::<_, i64>(0)? as u64,
                        studies: r.get::<_, i64>(1)? as u64,
                        series: r.get::<_, i64>(2)? as u64,
                        instances: r.get::<_, i64>(3)? as u64,
                        bytes: r.get::<_, i64>(4)? as u64,
                    })
                },
            )
            .map_err(|e| self.unavailable("counting", e))
        })
    }

    fn for_each(&self, f: &mut dyn FnMut(InstanceRecord) -> Result<()>) -> Result<()> {
        self.with_reader(|conn| {
            let sql = format!("SELECT {RECORD_COLUMNS} FROM {}", from_clause(QueryLevel::Instance));
            let mut stmt = conn.prepare(&sql).map_err(|e| self.unavailable("listing", e))?;
            let mut rows = stmt.query([]).map_err(|e| self.unavailable("listing", e))?;
            while let Some(row) = rows.next().map_err(|e| self.unavailable("listing", e))? {
                f(record_from_row(row).map_err(|e| self.unavailable("reading", e))??)?;
            }
            Ok(())
        })
    }

    fn describe(&self) -> String {
        format!("SQLite index {}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_layouts_round_trip() {
        for layout in [
            PixelLayout::Unknown,
            PixelLayout::Native { offset: 1234, length: u64::MAX / 3 },
            PixelLayout::Encapsulated { fragments: vec![(10, 20), (40, 2)], offset_table: vec![0, 28] },
            PixelLayout::Encapsulated { fragments: vec![], offset_table: vec![] },
        ] {
            let bytes = encode_pixel(&layout);
            assert_eq!(decode_pixel(bytes.as_deref()), Some(layout));
        }
        assert_eq!(decode_pixel(Some(&[2, 5, 0, 0, 0])), None);
        assert_eq!(decode_pixel(Some(&[9])), None);
    }

    /// A cached statement is compiled once: new bound values must not make SQLite compile it
    /// again (which the bundled build, with STAT4, does unless the query planner is stable),
    /// since that compilation costs more than a small query itself.
    #[test]
    fn cached_queries_are_not_recompiled_for_new_values() {
        use rusqlite::StatementStatus;
        let dir = tempfile::tempdir().expect("a temporary folder");
        let index = SqliteIndex::open(&dir.path().join("index.sqlite")).expect("a new index");
        let query = |pid: &str| Query::new(QueryLevel::Study).with(Attribute::PatientId, pid).expect("a Patient ID key");
        for pid in ["A", "B", "C", "D"] {
            assert!(index.find(&query(pid)).expect("a query").is_empty());
        }
        // One thread: every query above ran on the same pooled connection, whose statement
        // cache holds the statement.
        let (sql, _, _) = translate(&query("A"));
        let reprepared = index
            .with_reader(|conn| Ok(conn.prepare_cached(&sql).map(|stmt| stmt.get_status(StatementStatus::RePrepare))))
            .expect("the pooled connection")
            .expect("the cached statement");
        assert_eq!(reprepared, 0);
    }
}
