//! Shared by the property tests.

use proptest::test_runner::Config;

/// 64 cases per property; `SCORECL_PROPTEST_CASES` raises it for a soak
/// (rejections allowed up to 64 per case, for the filtered properties).
pub fn proptest_config() -> Config {
    let cases = std::env::var("SCORECL_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    Config {
        cases,
        max_global_rejects: cases * 64,
        ..Config::default()
    }
}
