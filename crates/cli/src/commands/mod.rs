pub mod bench;
pub mod chat;
pub mod generate;
pub mod inspect;
pub mod logits;
pub mod plan;
pub mod serve;
pub mod tokenize;
