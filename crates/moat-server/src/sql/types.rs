//! PostgreSQL types for what SQLite holds: declared column types to OIDs,
//! SQLite values encoded as PostgreSQL text or binary fields, and parameters
//! decoded from either format by their declared type.
//!
//! Only built-in OIDs are ever sent, so clients (tokio-postgres, psycopg)
//! never need to look types up in `pg_catalog`.

use bytes::{BufMut, BytesMut};
use pgwire::api::Type;
use rusqlite::types::Value;

use super::error::SqlError;

/// The PostgreSQL type of a declared column type, following CockroachDB
/// (`INT` is `INT8`) and then SQLite's affinity rules. `None`: no opinion
/// (the value decides).
pub fn from_decl(decl: &str) -> Option<Type> {
    let d = decl.to_ascii_uppercase();
    let base = d
        .split('(')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let base = base.trim_end_matches("[]");
    let t = match base {
        "SMALLINT" | "INT2" | "SMALLSERIAL" | "SERIAL2" | "TINYINT" => Type::INT2,
        "INT4" | "MEDIUMINT" | "SERIAL4" => Type::INT4,
        "INT" | "INTEGER" | "BIGINT" | "INT8" | "SERIAL" | "BIGSERIAL" | "SERIAL8" | "INT64" => Type::INT8,
        "REAL" | "FLOAT" | "FLOAT8" | "DOUBLE" | "DOUBLE PRECISION" => Type::FLOAT8,
        "FLOAT4" => Type::FLOAT4,
        "BOOL" | "BOOLEAN" => Type::BOOL,
        "TEXT" | "STRING" | "CLOB" | "CHAR" | "CHARACTER" | "NCHAR" | "NAME" | "CITEXT" => Type::TEXT,
        "VARCHAR" | "CHARACTER VARYING" | "NVARCHAR" | "VARYING CHARACTER" => Type::VARCHAR,
        "BLOB" | "BYTEA" | "BYTES" => Type::BYTEA,
        "NUMERIC" | "DECIMAL" | "DEC" => Type::NUMERIC,
        "DATE" => Type::DATE,
        "TIME" | "TIME WITHOUT TIME ZONE" => Type::TIME,
        "TIMESTAMP" | "DATETIME" | "TIMESTAMP WITHOUT TIME ZONE" => Type::TIMESTAMP,
        "TIMESTAMPTZ" | "TIMESTAMP WITH TIME ZONE" => Type::TIMESTAMPTZ,
        "JSON" => Type::JSON,
        "JSONB" => Type::JSONB,
        "UUID" => Type::UUID,
        "OID" => Type::OID,
        "INTERVAL" | "POINT" | "INET" | "CIDR" => Type::TEXT,
        _ if base.contains("INT") => Type::INT8,
        _ if base.contains("CHAR") || base.contains("CLOB") || base.contains("TEXT") => Type::TEXT,
        _ if base.contains("BLOB") => Type::BYTEA,
        _ if base.contains("REAL") || base.contains("FLOA") || base.contains("DOUB") => Type::FLOAT8,
        _ => return None,
    };
    Some(t)
}

/// The SQLite type name to `CAST` to for a PostgreSQL cast target, with the
/// PostgreSQL type it stands for; a name ending in `(` is a function to call
/// instead (`moat_bool(x)`, `date(x)`). `None`: not a type moat knows.
pub fn cast_target(pg_name: &str) -> Option<(Type, &'static str)> {
    let t = from_decl(pg_name)?;
    let sqlite = match t {
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => "INTEGER",
        Type::FLOAT4 | Type::FLOAT8 => "REAL",
        Type::NUMERIC => "NUMERIC",
        Type::BYTEA => "BLOB",
        Type::BOOL => "moat_bool(",
        Type::DATE => "date(",
        _ => "TEXT",
    };
    Some((t, sqlite))
}

/// The type of a value when nothing else says (`NULL` is `TEXT`).
pub fn of_value(v: &Value) -> Type {
    match v {
        Value::Integer(_) => Type::INT8,
        Value::Real(_) => Type::FLOAT8,
        Value::Blob(_) => Type::BYTEA,
        Value::Text(_) | Value::Null => Type::TEXT,
    }
}

/// Whether moat can encode and decode `t`.
pub fn supported(t: &Type) -> bool {
    matches!(
        *t,
        Type::INT2
            | Type::INT4
            | Type::INT8
            | Type::OID
            | Type::FLOAT4
            | Type::FLOAT8
            | Type::BOOL
            | Type::TEXT
            | Type::VARCHAR
            | Type::BPCHAR
            | Type::NAME
            | Type::UNKNOWN
            | Type::BYTEA
            | Type::NUMERIC
            | Type::DATE
            | Type::TIME
            | Type::TIMESTAMP
            | Type::TIMESTAMPTZ
            | Type::JSON
            | Type::JSONB
            | Type::UUID
            | Type::CHAR
    )
}

fn bad(ty: &Type, v: &Value) -> SqlError {
    let shown = match v {
        Value::Text(s) => format!("{:?}", truncate(s)),
        Value::Integer(i) => i.to_string(),
        Value::Real(f) => float_text(*f),
        Value::Blob(b) => format!("a {}-byte blob", b.len()),
        Value::Null => "NULL".into(),
    };
    SqlError::new("22P02", format!("invalid input syntax for type {}: {shown}", ty.name()))
        .hint("SQLite stores any value in any column; this one does not fit the column's declared type")
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn to_i64(v: &Value, ty: &Type) -> Result<i64, SqlError> {
    match v {
        Value::Integer(i) => Ok(*i),
        Value::Real(f) if f.is_finite() && f.abs() < 9.2e18 => Ok(f.round() as i64),
        Value::Text(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .ok()
                .or_else(|| match s.to_ascii_lowercase().as_str() {
                    "t" | "true" => Some(1),
                    "f" | "false" => Some(0),
                    _ => None,
                })
                .ok_or_else(|| bad(ty, v))
        }
        _ => Err(bad(ty, v)),
    }
}

fn to_f64(v: &Value, ty: &Type) -> Result<f64, SqlError> {
    match v {
        Value::Integer(i) => Ok(*i as f64),
        Value::Real(f) => Ok(*f),
        Value::Text(s) => parse_float(s).ok_or_else(|| bad(ty, v)),
        _ => Err(bad(ty, v)),
    }
}

fn parse_float(s: &str) -> Option<f64> {
    let s = s.trim();
    match s.to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "infinity" | "inf" | "+infinity" | "+inf" => Some(f64::INFINITY),
        "-infinity" | "-inf" => Some(f64::NEG_INFINITY),
        _ => s.parse::<f64>().ok().filter(|f| f.is_finite()),
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" => Some(true),
        "f" | "false" | "n" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn to_bool(v: &Value, ty: &Type) -> Result<bool, SqlError> {
    match v {
        Value::Integer(i) => Ok(*i != 0),
        Value::Real(f) => Ok(*f != 0.0),
        Value::Text(s) => parse_bool(s).ok_or_else(|| bad(ty, v)),
        _ => Err(bad(ty, v)),
    }
}

/// PostgreSQL's text form of a double (shortest exact digits, exponent
/// outside 1e-4 .. 1e15, `NaN`, `Infinity`).
pub fn float_text(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let e = format!("{f:e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..15).contains(&exp) {
        format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    } else {
        format!("{f}")
    }
}

fn float4_text(f: f32) -> String {
    if !f.is_finite() || f == 0.0 {
        return float_text(f as f64);
    }
    let e = format!("{f:e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    } else {
        format!("{f}")
    }
}

fn plain_text(v: &Value) -> String {
    match v {
        Value::Integer(i) => i.to_string(),
        Value::Real(f) => float_text(*f),
        Value::Text(s) => s.clone(),
        Value::Blob(b) => match std::str::from_utf8(b) {
            Ok(s) => s.to_string(),
            Err(_) => format!("\\x{}", hex(b)),
        },
        Value::Null => String::new(),
    }
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// Appends one DataRow field (length-prefixed; `NULL` is length -1).
pub fn encode(v: &Value, ty: &Type, binary: bool, out: &mut BytesMut) -> Result<(), SqlError> {
    if matches!(v, Value::Null) {
        out.put_i32(-1);
        return Ok(());
    }
    let at = out.len();
    out.put_i32(0);
    if binary {
        encode_binary(v, ty, out)?;
    } else {
        out.put_slice(encode_text(v, ty)?.as_bytes());
    }
    let len = (out.len() - at - 4) as i32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

fn range(ty: &Type, i: i64, min: i64, max: i64) -> Result<i64, SqlError> {
    if i < min || i > max {
        Err(SqlError::new(
            "22003",
            format!("{i} is out of range for type {}", ty.name()),
        ))
    } else {
        Ok(i)
    }
}

/// The PostgreSQL text form of a value as type `ty`.
pub fn encode_text(v: &Value, ty: &Type) -> Result<String, SqlError> {
    Ok(match *ty {
        Type::INT2 => range(ty, to_i64(v, ty)?, i16::MIN as i64, i16::MAX as i64)?.to_string(),
        Type::INT4 => range(ty, to_i64(v, ty)?, i32::MIN as i64, i32::MAX as i64)?.to_string(),
        Type::OID => range(ty, to_i64(v, ty)?, 0, u32::MAX as i64)?.to_string(),
        Type::INT8 => to_i64(v, ty)?.to_string(),
        Type::FLOAT8 => float_text(to_f64(v, ty)?),
        Type::FLOAT4 => float4_text(to_f64(v, ty)? as f32),
        Type::BOOL => (if to_bool(v, ty)? { "t" } else { "f" }).to_string(),
        Type::BYTEA => match v {
            Value::Blob(b) => format!("\\x{}", hex(b)),
            other => format!("\\x{}", hex(plain_text(other).as_bytes())),
        },
        Type::NUMERIC => numeric_text(v, ty)?,
        Type::DATE | Type::TIME | Type::TIMESTAMP | Type::TIMESTAMPTZ => match DateTime::from_value(v) {
            Some(dt) => dt.text(ty),
            None => plain_text(v),
        },
        Type::UUID => match uuid_bytes(v) {
            Some(b) => uuid_text(&b),
            None => return Err(bad(ty, v)),
        },
        _ => plain_text(v),
    })
}

fn encode_binary(v: &Value, ty: &Type, out: &mut BytesMut) -> Result<(), SqlError> {
    match *ty {
        Type::INT2 => out.put_i16(range(ty, to_i64(v, ty)?, i16::MIN as i64, i16::MAX as i64)? as i16),
        Type::INT4 => out.put_i32(range(ty, to_i64(v, ty)?, i32::MIN as i64, i32::MAX as i64)? as i32),
        Type::OID => out.put_u32(range(ty, to_i64(v, ty)?, 0, u32::MAX as i64)? as u32),
        Type::INT8 => out.put_i64(to_i64(v, ty)?),
        Type::FLOAT8 => out.put_f64(to_f64(v, ty)?),
        Type::FLOAT4 => out.put_f32(to_f64(v, ty)? as f32),
        Type::BOOL => out.put_u8(to_bool(v, ty)? as u8),
        Type::BYTEA => match v {
            Value::Blob(b) => out.put_slice(b),
            other => out.put_slice(plain_text(other).as_bytes()),
        },
        Type::NUMERIC => {
            let text = numeric_text(v, ty)?;
            numeric_binary(&text, out).ok_or_else(|| bad(ty, v))?
        }
        Type::DATE | Type::TIME | Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            let dt = DateTime::from_value(v).ok_or_else(|| {
                SqlError::new(
                    "22007",
                    format!(
                        "invalid input syntax for type {}: {}",
                        ty.name(),
                        truncate(&plain_text(v))
                    ),
                )
            })?;
            match *ty {
                Type::DATE => out.put_i32(dt.days - PG_EPOCH_JDN),
                Type::TIME => out.put_i64(dt.micros),
                Type::TIMESTAMP => out.put_i64(dt.pg_micros(false)),
                _ => out.put_i64(dt.pg_micros(true)),
            }
        }
        Type::UUID => out.put_slice(&uuid_bytes(v).ok_or_else(|| bad(ty, v))?),
        Type::JSONB => {
            out.put_u8(1);
            out.put_slice(plain_text(v).as_bytes());
        }
        _ => out.put_slice(plain_text(v).as_bytes()),
    }
    Ok(())
}

// ---------------------------------------------------------------- numeric

fn numeric_text(v: &Value, ty: &Type) -> Result<String, SqlError> {
    match v {
        Value::Integer(i) => Ok(i.to_string()),
        Value::Real(f) if f.is_nan() => Ok("NaN".into()),
        Value::Real(f) if f.is_infinite() => Ok(if *f > 0.0 { "Infinity" } else { "-Infinity" }.into()),
        Value::Real(f) => Ok(format!("{f}")),
        Value::Text(s) => {
            let t = s.trim();
            if ["nan", "infinity", "-infinity"].contains(&t.to_ascii_lowercase().as_str()) {
                return Ok(t.to_string());
            }
            parse_decimal(t).map(|d| d.to_string()).ok_or_else(|| bad(ty, v))
        }
        _ => Err(bad(ty, v)),
    }
}

/// A decimal as sign, integer digits (no leading zeros) and fraction digits.
struct Decimal {
    neg: bool,
    int: String,
    frac: String,
}

impl std::fmt::Display for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let zero = self.int.is_empty() && self.frac.bytes().all(|b| b == b'0');
        if self.neg && !zero {
            f.write_str("-")?;
        }
        f.write_str(if self.int.is_empty() { "0" } else { &self.int })?;
        if !self.frac.is_empty() {
            write!(f, ".{}", self.frac)?;
        }
        Ok(())
    }
}

fn parse_decimal(s: &str) -> Option<Decimal> {
    let (neg, s) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (mant, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], s[i + 1..].parse::<i32>().ok()?),
        None => (s, 0),
    };
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    if (int.is_empty() && frac.is_empty()) || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    if exp.abs() > 1000 {
        return None;
    }
    let mut digits = format!("{int}{frac}");
    let mut point = int.len() as i32 + exp; // digits before the point
    if point < 0 {
        digits = "0".repeat((-point) as usize) + &digits;
        point = 0;
    }
    if point as usize > digits.len() {
        digits.push_str(&"0".repeat(point as usize - digits.len()));
    }
    let (i, f) = digits.split_at(point as usize);
    let scale = (frac.len() as i32 - exp).max(0) as usize;
    let mut f = f.to_string();
    f.truncate(scale.max(f.trim_end_matches('0').len()));
    Some(Decimal {
        neg,
        int: i.trim_start_matches('0').to_string(),
        frac: f,
    })
}

fn numeric_binary(text: &str, out: &mut BytesMut) -> Option<()> {
    let special = match text.to_ascii_lowercase().as_str() {
        "nan" => Some(0xC000u16),
        "infinity" => Some(0xD000),
        "-infinity" => Some(0xF000),
        _ => None,
    };
    if let Some(sign) = special {
        out.put_i16(0);
        out.put_i16(0);
        out.put_u16(sign);
        out.put_u16(0);
        return Some(());
    }
    let d = parse_decimal(text)?;
    let dscale = d.frac.len() as u16;
    let mut int = d.int.clone();
    while !int.len().is_multiple_of(4) {
        int.insert(0, '0');
    }
    let mut frac = d.frac.clone();
    while !frac.len().is_multiple_of(4) {
        frac.push('0');
    }
    let group = |s: &str| -> Vec<i16> {
        s.as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap().parse().unwrap())
            .collect()
    };
    let ig = group(&int);
    let mut digits = ig.clone();
    digits.extend(group(&frac));
    let mut weight = ig.len() as i16 - 1;
    while digits.first() == Some(&0) {
        digits.remove(0);
        weight -= 1;
    }
    while digits.last() == Some(&0) {
        digits.pop();
    }
    let sign = if d.neg && !digits.is_empty() { 0x4000u16 } else { 0 };
    if digits.is_empty() {
        weight = 0;
    }
    out.put_i16(digits.len() as i16);
    out.put_i16(weight);
    out.put_u16(sign);
    out.put_u16(dscale);
    for g in digits {
        out.put_i16(g);
    }
    Some(())
}

fn numeric_from_binary(b: &[u8]) -> Option<String> {
    if b.len() < 8 {
        return None;
    }
    let rd = |i: usize| i16::from_be_bytes([b[i], b[i + 1]]);
    let n = rd(0) as usize;
    let weight = rd(2) as i32;
    let sign = rd(4) as u16;
    let dscale = rd(6) as usize;
    match sign {
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        _ => {}
    }
    if b.len() < 8 + 2 * n {
        return None;
    }
    let digits: Vec<i32> = (0..n).map(|k| rd(8 + 2 * k) as i32).collect();
    let at = |k: i32| {
        if k >= 0 && (k as usize) < n {
            digits[k as usize]
        } else {
            0
        }
    };
    let mut s = String::new();
    if sign == 0x4000 {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        for k in 0..=weight {
            if k == 0 {
                s.push_str(&at(k).to_string());
            } else {
                s.push_str(&format!("{:04}", at(k)));
            }
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        let mut k = weight + 1;
        while frac.len() < dscale {
            frac.push_str(&format!("{:04}", at(k)));
            k += 1;
        }
        frac.truncate(dscale);
        s.push('.');
        s.push_str(&frac);
    }
    Some(s)
}

// ------------------------------------------------------------ date & time

/// Julian day number of 2000-01-01, PostgreSQL's epoch.
const PG_EPOCH_JDN: i32 = 2_451_545;
const DAY_MICROS: i64 = 86_400_000_000;

/// A date and time as SQLite may store it: ISO-8601 text, or Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DateTime {
    /// Julian day number.
    days: i32,
    /// Microseconds since midnight.
    micros: i64,
    /// UTC offset in seconds, when the text had one.
    offset: Option<i32>,
    /// Whether there was a date part.
    has_date: bool,
}

impl DateTime {
    fn from_value(v: &Value) -> Option<DateTime> {
        match v {
            Value::Text(s) => DateTime::parse(s),
            Value::Integer(secs) => Some(DateTime::from_unix_micros(secs.checked_mul(1_000_000)?)),
            Value::Real(secs) if secs.is_finite() => Some(DateTime::from_unix_micros((secs * 1e6).round() as i64)),
            _ => None,
        }
    }

    fn from_unix_micros(us: i64) -> DateTime {
        let days = us.div_euclid(DAY_MICROS);
        DateTime {
            days: (days + 2_440_588) as i32,
            micros: us.rem_euclid(DAY_MICROS),
            offset: Some(0),
            has_date: true,
        }
    }

    fn parse(s: &str) -> Option<DateTime> {
        let s = s.trim();
        let b = s.as_bytes();
        let num = |from: usize, len: usize| -> Option<i64> {
            let part = s.get(from..from + len)?;
            part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
        };
        let mut i = 0;
        let mut days = PG_EPOCH_JDN;
        let mut has_date = false;
        if b.len() >= 10 && b.get(4) == Some(&b'-') && b.get(7) == Some(&b'-') {
            let y = num(0, 4)? as i32;
            let m = num(5, 2)? as u8;
            let d = num(8, 2)? as u8;
            let date = time::Date::from_calendar_date(y, time::Month::try_from(m).ok()?, d).ok()?;
            days = date.to_julian_day();
            has_date = true;
            i = 10;
            if i < b.len() && (b[i] == b'T' || b[i] == b't' || b[i] == b' ') {
                i += 1;
            }
        }
        let mut micros = 0i64;
        if i + 5 <= b.len() && b.get(i + 2) == Some(&b':') {
            let h = num(i, 2)?;
            let mi = num(i + 3, 2)?;
            i += 5;
            let mut sec = 0;
            if b.get(i) == Some(&b':') {
                sec = num(i + 1, 2)?;
                i += 3;
            }
            let mut frac = 0i64;
            if b.get(i) == Some(&b'.') {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
                let digits = &s[start..j];
                let mut d6: String = digits.chars().take(6).collect();
                while d6.len() < 6 {
                    d6.push('0');
                }
                frac = d6.parse().ok()?;
                i = j;
            }
            if h > 24 || mi > 59 || sec > 60 {
                return None;
            }
            micros = ((h * 60 + mi) * 60 + sec) * 1_000_000 + frac;
        } else if !has_date {
            return None;
        }
        let rest = s[i..].trim();
        let offset = if rest.is_empty() {
            None
        } else if rest.eq_ignore_ascii_case("z") || rest.eq_ignore_ascii_case("utc") || rest.eq_ignore_ascii_case("gmt")
        {
            Some(0)
        } else if rest.starts_with('+') || rest.starts_with('-') {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            let digits: String = rest[1..].chars().filter(|c| *c != ':').collect();
            if !digits.bytes().all(|c| c.is_ascii_digit()) || digits.is_empty() || digits.len() > 6 {
                return None;
            }
            let h: i32 = digits.get(0..2.min(digits.len()))?.parse().ok()?;
            let m: i32 = digits.get(2..4).map(|x| x.parse().unwrap_or(0)).unwrap_or(0);
            let sec: i32 = digits.get(4..6).map(|x| x.parse().unwrap_or(0)).unwrap_or(0);
            Some(sign * (h * 3600 + m * 60 + sec))
        } else {
            return None;
        };
        Some(DateTime {
            days,
            micros,
            offset,
            has_date,
        })
    }

    /// Microseconds since 2000-01-01 00:00; in UTC when `utc`.
    fn pg_micros(&self, utc: bool) -> i64 {
        let local = (self.days - PG_EPOCH_JDN) as i64 * DAY_MICROS + self.micros;
        if utc {
            local - self.offset.unwrap_or(0) as i64 * 1_000_000
        } else {
            local
        }
    }

    fn text(&self, ty: &Type) -> String {
        let (days, micros) = if *ty == Type::TIMESTAMPTZ {
            let us = self.pg_micros(true);
            (
                (us.div_euclid(DAY_MICROS)) as i32 + PG_EPOCH_JDN,
                us.rem_euclid(DAY_MICROS),
            )
        } else {
            (self.days, self.micros)
        };
        let date = time::Date::from_julian_day(days)
            .map(|d| format!("{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day()))
            .unwrap_or_default();
        let secs = micros / 1_000_000;
        let frac = micros % 1_000_000;
        let mut t = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
        if frac != 0 {
            let f = format!(".{frac:06}");
            t.push_str(f.trim_end_matches('0'));
        }
        match *ty {
            Type::DATE => date,
            Type::TIME => t,
            Type::TIMESTAMP => format!("{date} {t}"),
            _ => format!("{date} {t}+00"),
        }
    }

    fn sqlite_text(&self, with_offset: bool) -> String {
        let ty = if with_offset {
            Type::TIMESTAMPTZ
        } else {
            Type::TIMESTAMP
        };
        let s = self.text(&ty);
        if with_offset {
            format!("{}:00", s)
        } else {
            s
        }
    }
}

// ------------------------------------------------------------------ uuid

fn uuid_bytes(v: &Value) -> Option<[u8; 16]> {
    match v {
        Value::Blob(b) if b.len() == 16 => b.as_slice().try_into().ok(),
        Value::Text(s) => parse_uuid(s),
        _ => None,
    }
}

fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let h: Vec<u8> = s
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .bytes()
        .filter(|c| *c != b'-')
        .collect();
    if h.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (k, pair) in h.chunks(2).enumerate() {
        out[k] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// A version-4 UUID's text from 16 random bytes (the version and variant
/// bits are set here).
pub fn uuid_v4_text(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid_text(&b)
}

/// The text form of a UUID.
pub fn uuid_text(b: &[u8; 16]) -> String {
    let h = hex(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

// ------------------------------------------------------------- parameters

fn param_err(ty: &Type, binary: bool, what: &str) -> SqlError {
    if binary {
        SqlError::new(
            "22P03",
            format!(
                "incorrect binary data format in bind parameter of type {}: {what}",
                ty.name()
            ),
        )
    } else {
        SqlError::new("22P02", format!("invalid input syntax for type {}: {what}", ty.name()))
    }
}

fn fixed<const N: usize>(b: &[u8], ty: &Type) -> Result<[u8; N], SqlError> {
    b.try_into()
        .map_err(|_| param_err(ty, true, &format!("expected {N} bytes, got {}", b.len())))
}

/// Decodes one bind parameter as type `ty` into the SQLite value stored.
pub fn decode_param(raw: Option<&[u8]>, ty: &Type, binary: bool) -> Result<Value, SqlError> {
    let Some(b) = raw else {
        return Ok(Value::Null);
    };
    if !supported(ty) {
        return Err(SqlError::unsupported(format!("a bind parameter of type {}", ty.name())));
    }
    let text =
        || -> Result<&str, SqlError> { std::str::from_utf8(b).map_err(|_| param_err(ty, binary, "not valid UTF-8")) };
    if binary {
        return Ok(match *ty {
            Type::INT2 => Value::Integer(i16::from_be_bytes(fixed(b, ty)?) as i64),
            Type::INT4 => Value::Integer(i32::from_be_bytes(fixed(b, ty)?) as i64),
            Type::OID => Value::Integer(u32::from_be_bytes(fixed(b, ty)?) as i64),
            Type::INT8 => Value::Integer(i64::from_be_bytes(fixed(b, ty)?)),
            Type::FLOAT4 => Value::Real(f32::from_be_bytes(fixed(b, ty)?) as f64),
            Type::FLOAT8 => Value::Real(f64::from_be_bytes(fixed(b, ty)?)),
            Type::BOOL => Value::Integer((fixed::<1>(b, ty)?[0] != 0) as i64),
            Type::BYTEA => Value::Blob(b.to_vec()),
            Type::NUMERIC => {
                let s = numeric_from_binary(b).ok_or_else(|| param_err(ty, true, "bad numeric"))?;
                numeric_value(&s)
            }
            Type::DATE => {
                let days = i32::from_be_bytes(fixed(b, ty)?);
                Value::Text(
                    DateTime {
                        days: days + PG_EPOCH_JDN,
                        micros: 0,
                        offset: None,
                        has_date: true,
                    }
                    .text(&Type::DATE),
                )
            }
            Type::TIME => {
                let us = i64::from_be_bytes(fixed(b, ty)?);
                Value::Text(
                    DateTime {
                        days: PG_EPOCH_JDN,
                        micros: us,
                        offset: None,
                        has_date: false,
                    }
                    .text(&Type::TIME),
                )
            }
            Type::TIMESTAMP | Type::TIMESTAMPTZ => {
                let us = i64::from_be_bytes(fixed(b, ty)?);
                let dt = DateTime::from_unix_micros(us + 946_684_800_000_000);
                Value::Text(dt.sqlite_text(*ty == Type::TIMESTAMPTZ))
            }
            Type::UUID => Value::Text(uuid_text(&fixed(b, ty)?)),
            Type::JSONB => {
                if b.first() != Some(&1) {
                    return Err(param_err(ty, true, "unsupported jsonb version"));
                }
                Value::Text(
                    std::str::from_utf8(&b[1..])
                        .map_err(|_| param_err(ty, true, "not valid UTF-8"))?
                        .to_string(),
                )
            }
            _ => Value::Text(text()?.to_string()),
        });
    }
    let s = text()?;
    Ok(match *ty {
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => Value::Integer(
            s.trim()
                .parse::<i64>()
                .map_err(|_| param_err(ty, false, &format!("{:?}", truncate(s))))?,
        ),
        Type::FLOAT4 | Type::FLOAT8 => {
            Value::Real(parse_float(s).ok_or_else(|| param_err(ty, false, &format!("{:?}", truncate(s))))?)
        }
        Type::BOOL => {
            Value::Integer(parse_bool(s).ok_or_else(|| param_err(ty, false, &format!("{:?}", truncate(s))))? as i64)
        }
        Type::BYTEA => Value::Blob(bytea_from_text(s).ok_or_else(|| param_err(ty, false, "bad bytea"))?),
        Type::NUMERIC => {
            if parse_decimal(s.trim()).is_none()
                && !["nan", "infinity", "-infinity"].contains(&s.trim().to_ascii_lowercase().as_str())
            {
                return Err(param_err(ty, false, &format!("{:?}", truncate(s))));
            }
            numeric_value(s.trim())
        }
        Type::UUID => Value::Text(uuid_text(
            &parse_uuid(s).ok_or_else(|| param_err(ty, false, &format!("{:?}", truncate(s))))?,
        )),
        _ => Value::Text(s.to_string()),
    })
}

/// A numeric parameter: an integer when it is one, else its text (a NUMERIC
/// column's affinity makes it a REAL).
fn numeric_value(s: &str) -> Value {
    match s.parse::<i64>() {
        Ok(i) => Value::Integer(i),
        Err(_) => Value::Text(s.to_string()),
    }
}

fn bytea_from_text(s: &str) -> Option<Vec<u8>> {
    if let Some(h) = s.strip_prefix("\\x") {
        let h: Vec<u8> = h.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
        if !h.len().is_multiple_of(2) {
            return None;
        }
        return h
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
            .collect();
    }
    // Escape format: \\ and \ooo.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if b.get(i + 1) == Some(&b'\\') {
                out.push(b'\\');
                i += 2;
            } else {
                let oct = s.get(i + 1..i + 4)?;
                out.push(u8::from_str_radix(oct, 8).ok()?);
                i += 4;
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: Value, t: Type) -> String {
        encode_text(&v, &t).unwrap()
    }

    #[test]
    fn decl_types() {
        assert_eq!(from_decl("INTEGER"), Some(Type::INT8));
        assert_eq!(from_decl("int"), Some(Type::INT8));
        assert_eq!(from_decl("smallint"), Some(Type::INT2));
        assert_eq!(from_decl("VARCHAR(20)"), Some(Type::VARCHAR));
        assert_eq!(from_decl("double precision"), Some(Type::FLOAT8));
        assert_eq!(from_decl("timestamp with time zone"), Some(Type::TIMESTAMPTZ));
        assert_eq!(from_decl("DECIMAL(10,2)"), Some(Type::NUMERIC));
        assert_eq!(from_decl("whatever"), None);
    }

    #[test]
    fn floats() {
        assert_eq!(float_text(1.0), "1");
        assert_eq!(float_text(0.1), "0.1");
        assert_eq!(float_text(1e20), "1e+20");
        assert_eq!(float_text(1.5e-7), "1.5e-07");
        assert_eq!(float_text(f64::NAN), "NaN");
        assert_eq!(float_text(-f64::INFINITY), "-Infinity");
    }

    #[test]
    fn text_forms() {
        assert_eq!(text(Value::Integer(1), Type::BOOL), "t");
        assert_eq!(text(Value::Text("false".into()), Type::BOOL), "f");
        assert_eq!(text(Value::Blob(vec![0, 255]), Type::BYTEA), "\\x00ff");
        assert_eq!(text(Value::Real(1.5), Type::NUMERIC), "1.5");
        assert_eq!(
            text(Value::Text("2024-01-02T03:04:05.250Z".into()), Type::TIMESTAMP),
            "2024-01-02 03:04:05.25"
        );
        assert_eq!(
            text(Value::Text("2024-01-02 03:04:05+02:00".into()), Type::TIMESTAMPTZ),
            "2024-01-02 01:04:05+00"
        );
        assert_eq!(text(Value::Integer(0), Type::TIMESTAMP), "1970-01-01 00:00:00");
        assert!(encode_text(&Value::Text("abc".into()), &Type::INT8).is_err());
        assert_eq!(
            encode_text(&Value::Integer(70000), &Type::INT2).unwrap_err().code,
            "22003"
        );
    }

    #[test]
    fn numeric_round_trip() {
        for s in [
            "0",
            "1",
            "-1.50",
            "12345.6789",
            "0.0001",
            "100000000",
            "-0.000012",
            "NaN",
        ] {
            let mut b = BytesMut::new();
            numeric_binary(s, &mut b).unwrap();
            let back = numeric_from_binary(&b).unwrap();
            assert_eq!(back, s, "{s}");
        }
        assert_eq!(parse_decimal("1.5e3").unwrap().to_string(), "1500");
        assert_eq!(parse_decimal("15e-3").unwrap().to_string(), "0.015");
    }

    #[test]
    fn params() {
        assert_eq!(
            decode_param(Some(&5i16.to_be_bytes()), &Type::INT2, true).unwrap(),
            Value::Integer(5)
        );
        assert_eq!(decode_param(Some(b"t"), &Type::BOOL, false).unwrap(), Value::Integer(1));
        assert_eq!(
            decode_param(Some(b"\\x0102"), &Type::BYTEA, false).unwrap(),
            Value::Blob(vec![1, 2])
        );
        assert_eq!(decode_param(None, &Type::INT8, true).unwrap(), Value::Null);
        assert_eq!(decode_param(Some(b"x"), &Type::INT4, false).unwrap_err().code, "22P02");
        let us: i64 = 86_400_000_000 + 1_500_000;
        assert_eq!(
            decode_param(Some(&us.to_be_bytes()), &Type::TIMESTAMP, true).unwrap(),
            Value::Text("2000-01-02 00:00:01.5".into())
        );
        let mut b = BytesMut::new();
        encode(
            &Value::Text("2000-01-02 00:00:01.5".into()),
            &Type::TIMESTAMP,
            true,
            &mut b,
        )
        .unwrap();
        assert_eq!(&b[4..], &us.to_be_bytes());
    }
}
