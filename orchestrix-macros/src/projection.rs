//! `#[projection]`: an impl block whose methods handle typed events becomes
//! a `Projection`.
//!
//! Parse, validate and expand live together here: the macro is small.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{FnArg, ImplItem, ItemImpl, LitStr, Path, ReturnType, Token, Type};

mod kw {
    syn::custom_keyword!(name);
}

const VALID_KEYS: &str = "`name`, `crate`";

/// The arguments of `#[projection(...)]`.
#[derive(Default)]
pub(crate) struct Args {
    name: Option<LitStr>,
    krate: Option<Path>,
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = Args::default();
        let mut errors: Option<syn::Error> = None;
        let mut push = |e: syn::Error| match &mut errors {
            Some(all) => all.combine(e),
            None => errors = Some(e),
        };
        while !input.is_empty() {
            let lookahead = input.lookahead1();
            if lookahead.peek(kw::name) {
                let key: kw::name = input.parse()?;
                input.parse::<Token![=]>()?;
                let value: LitStr = input.parse()?;
                if args.name.is_some() {
                    push(syn::Error::new(key.span, "duplicate key `name`"));
                } else if value.value().trim().is_empty() || value.value().contains('\0') {
                    push(syn::Error::new(value.span(), "the projection name must not be empty or contain NUL"));
                } else {
                    args.name = Some(value);
                }
            } else if lookahead.peek(Token![crate]) {
                let key: Token![crate] = input.parse()?;
                input.parse::<Token![=]>()?;
                let value: LitStr = input.parse()?;
                if args.krate.is_some() {
                    push(syn::Error::new(key.span, "duplicate key `crate`"));
                } else {
                    args.krate = Some(value.parse()?);
                }
            } else if input.peek(syn::Ident) {
                let ident: syn::Ident = input.parse()?;
                push(syn::Error::new(
                    ident.span(),
                    format!("unknown key `{ident}` for `#[projection]`; valid keys are {VALID_KEYS}"),
                ));
                if input.peek(Token![=]) {
                    input.parse::<Token![=]>()?;
                    input.parse::<syn::Expr>()?;
                }
            } else {
                return Err(lookahead.error());
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        match errors {
            Some(e) => Err(e),
            None => Ok(args),
        }
    }
}

/// One validated handler method.
struct Handler {
    method: syn::Ident,
    event: Type,
    with_record: bool,
    is_async: bool,
    output: Type,
}

/// Expands `#[projection(args)] impl T { ... }`.
pub(crate) fn expand(args: TokenStream, input: TokenStream) -> TokenStream {
    let Ok(mut item) = syn::parse2::<ItemImpl>(input.clone()) else {
        let error = syn::Error::new(
            Span::call_site(),
            "`#[projection]` goes on an inherent impl block whose methods handle events",
        );
        return crate::with_input(&error, input);
    };
    let mut errors: Vec<syn::Error> = Vec::new();
    let mut push = |e: syn::Error| errors.push(e);
    let args = match syn::parse2::<Args>(args) {
        Ok(args) => args,
        Err(e) => {
            push(e);
            Args::default()
        }
    };
    if let Some((_, path, _)) = &item.trait_ {
        push(syn::Error::new(path.span(), "`#[projection]` goes on an inherent impl block, not a trait impl"));
    }
    if !item.generics.params.is_empty() {
        push(syn::Error::new(item.generics.span(), "projections cannot be generic; name a concrete type"));
    }

    let (handlers, reset) = collect_methods(&mut item, &mut push);
    if handlers.is_empty() && errors.is_empty() {
        errors.push(syn::Error::new(
            item.self_ty.span(),
            "a projection needs at least one method taking an event, like `fn on(&mut self, event: MyEvent) -> Result<(), MyError>`",
        ));
    }
    if let Some(combined) = errors.into_iter().reduce(|mut all, e| {
        all.combine(e);
        all
    }) {
        let errors = combined.to_compile_error();
        return quote! { #item #errors };
    }

    let krate = args.krate.map_or_else(|| quote!(::orchestrix), |p| quote!(#p));
    let self_ty = &item.self_ty;
    let name = args.name.map_or_else(|| type_key(self_ty), |n| n.value());
    let filters = handlers.iter().map(|h| {
        let event = &h.event;
        quote_spanned! {event.span()=> names.extend(<#event as #krate::Event>::type_names()); }
    });
    let dispatch = handlers.iter().map(|h| {
        let (event, method, output) = (&h.event, &h.method, &h.output);
        let call = if h.with_record { quote!(self.#method(event, record)) } else { quote!(self.#method(event)) };
        let call = if h.is_async { quote!(#call.await) } else { call };
        let check = format_ident!("__orchestrix_handler_returns_a_result_of_unit");
        quote_spanned! {event.span()=>
            if <#event as #krate::Event>::event_types().iter().any(|t| t.name == record.event_type) {
                let event: #event = record.decode::<#event>()?;
                let result: #output = #call;
                return #krate::__private::#check(result);
            }
        }
    });
    let reset = reset.map(|(method, is_async)| {
        let call = if is_async { quote!(self.#method().await) } else { quote!(self.#method()) };
        quote! {
            async fn reset(&mut self) -> ::core::result::Result<(), #krate::error::BoxError> {
                #krate::__private::__orchestrix_reset_result(#call)
            }
        }
    });
    quote! {
        #item

        #[automatically_derived]
        #[#krate::__private::async_trait]
        impl #krate::projection::Projection for #self_ty {
            fn name(&self) -> #krate::__private::Cow<'static, str> {
                #krate::__private::Cow::Borrowed(#name)
            }

            fn filter(&self) -> #krate::EventFilter {
                let mut names: #krate::__private::Vec<&'static str> = #krate::__private::Vec::new();
                #(#filters)*
                #krate::EventFilter::types(names)
            }

            async fn handle(
                &mut self,
                record: &#krate::RecordedEvent,
            ) -> ::core::result::Result<(), #krate::error::BoxError> {
                #(#dispatch)*
                ::core::result::Result::Ok(())
            }

            #reset
        }
    }
}

/// Finds the handlers and the `#[reset]` method of the block, stripping
/// `#[reset]` from the item.
fn collect_methods(
    item: &mut ItemImpl,
    push: &mut impl FnMut(syn::Error),
) -> (Vec<Handler>, Option<(syn::Ident, bool)>) {
    let mut handlers: Vec<Handler> = Vec::new();
    let mut reset: Option<(syn::Ident, bool)> = None;
    for impl_item in &mut item.items {
        let ImplItem::Fn(method) = impl_item else { continue };
        let before = method.attrs.len();
        method.attrs.retain(|a| !a.path().is_ident("reset"));
        if method.attrs.len() != before {
            if let Some((first, _)) = &reset {
                push(syn::Error::new(
                    method.sig.ident.span(),
                    format!("only one method can be `#[reset]`; `{first}` already is"),
                ));
            } else {
                reset = Some((method.sig.ident.clone(), method.sig.asyncness.is_some()));
            }
            continue;
        }
        match handler(&method.sig) {
            Ok(h) => {
                // The framework dictates the shape; lints against it are noise.
                method.attrs.push(syn::parse_quote!(
                    #[allow(clippy::unnecessary_wraps, clippy::needless_pass_by_value, clippy::unused_self)]
                ));
                if let Some(first) = handlers.iter().find(|other| type_key(&other.event) == type_key(&h.event)) {
                    push(syn::Error::new(
                        h.event.span(),
                        format!(
                            "events of type `{}` already go to `{}`; one handler per event type",
                            type_key(&h.event),
                            first.method
                        ),
                    ));
                } else {
                    handlers.push(h);
                }
            }
            Err(e) => push(e),
        }
    }
    (handlers, reset)
}

/// The text of a type, for duplicate detection and default names.
fn type_key(ty: &Type) -> String {
    match ty {
        Type::Path(p) => p.path.segments.last().map_or_else(String::new, |s| s.ident.to_string()),
        other => quote!(#other).to_string().replace(' ', ""),
    }
}

fn handler(sig: &syn::Signature) -> syn::Result<Handler> {
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new(sig.generics.span(), "projection handlers cannot be generic"));
    }
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_some() && r.colon_token.is_none() => {}
        Some(FnArg::Receiver(r)) => {
            return Err(syn::Error::new_spanned(r, "projection handlers take `&mut self`: they update the read model"))
        }
        _ => {
            return Err(syn::Error::new(
                sig.ident.span(),
                format!("`{}` needs a `&mut self` receiver to be a projection handler", sig.ident),
            ))
        }
    }
    let event = match inputs.next() {
        Some(FnArg::Typed(arg)) => match &*arg.ty {
            Type::Path(_) => (*arg.ty).clone(),
            Type::Reference(r) => {
                return Err(syn::Error::new_spanned(
                    r,
                    "take the event by value: `event: MyEvent`; the handler owns the decoded event",
                ))
            }
            other => return Err(syn::Error::new(other.span(), "the event parameter must be an event type")),
        },
        _ => {
            return Err(syn::Error::new(
                sig.ident.span(),
                format!("`{}` takes no event; write `fn {}(&mut self, event: MyEvent)`", sig.ident, sig.ident),
            ))
        }
    };
    let with_record = match inputs.next() {
        None => false,
        Some(FnArg::Typed(arg)) if matches!(&*arg.ty, Type::Reference(r) if r.mutability.is_none()) => true,
        Some(other) => {
            return Err(syn::Error::new(
                other.span(),
                "the optional second parameter is the stored record: `record: &RecordedEvent`",
            ))
        }
    };
    if let Some(extra) = inputs.next() {
        return Err(syn::Error::new(
            extra.span(),
            "projection handlers take the event and, optionally, `&RecordedEvent`",
        ));
    }
    let output = match &sig.output {
        ReturnType::Type(_, ty) if is_result(ty) => (**ty).clone(),
        ReturnType::Type(_, ty) => {
            return Err(syn::Error::new(ty.span(), "projection handlers return `Result<(), E>` with `E` an error type"))
        }
        ReturnType::Default => {
            return Err(syn::Error::new_spanned(
                &sig.ident,
                "projection handlers return `Result<(), E>`; add `-> Result<(), MyError>`",
            ))
        }
    };
    Ok(Handler { method: sig.ident.clone(), event, with_record, is_async: sig.asyncness.is_some(), output })
}

fn is_result(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Result"))
}
