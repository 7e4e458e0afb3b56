//! Placeholder: the macro crate is being written.
use proc_macro::TokenStream;
/// `#[event]`
#[proc_macro_attribute]
pub fn event(_a: TokenStream, i: TokenStream) -> TokenStream {
    i
}
/// `#[aggregate]`
#[proc_macro_attribute]
pub fn aggregate(_a: TokenStream, i: TokenStream) -> TokenStream {
    i
}
/// `#[command_handler]`
#[proc_macro_attribute]
pub fn command_handler(_a: TokenStream, i: TokenStream) -> TokenStream {
    i
}
