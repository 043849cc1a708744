//! Recipes (placeholder).
