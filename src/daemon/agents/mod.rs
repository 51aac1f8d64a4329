//! Resource agents (the dispatcher is added separately).
pub mod ip;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Start,
    Stop,
    Monitor,
}
