//! `CREATE/ALTER/DROP USER`, `SHOW USERS`: the user-management statement
//! parser the SQL engine consults for every statement, and user-name
//! normalisation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let sql = String::from_utf8_lossy(data);
    let _ = moat_server::users::parse(&sql);
    let _ = moat_pki::username::normalize(&sql);
    if let Ok(n) = moat_pki::username::normalize_and_validate(&sql) {
        assert_eq!(moat_pki::username::normalize(&n), n, "normalisation is not idempotent");
    }
});
