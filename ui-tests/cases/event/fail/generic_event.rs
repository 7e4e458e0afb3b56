use orchestrix::prelude::*;

#[event]
#[derive(Debug)]
pub enum Changed<T> {
    Set { value: T },
}

fn main() {}
