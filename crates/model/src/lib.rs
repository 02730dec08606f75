//! # memwall-model
