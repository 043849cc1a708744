//! Intake parsers (placeholder).
