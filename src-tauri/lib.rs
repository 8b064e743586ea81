//! The desktop app's shell (being written).
