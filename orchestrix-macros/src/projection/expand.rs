//! Generates the `Projection` impl.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::model::{Handler, Model, Reset};

/// The block, then `impl Projection` in a `const _`.
pub(crate) fn expand(model: &Model) -> TokenStream {
    let Model::Impl { krate, item, name, handlers, reset, .. } = model else { return fallback(model) };
    let filters = handlers.iter().map(|h| {
        let event = &h.event;
        quote_spanned! {event.span()=> __orchestrix_names.extend(<#event as #krate::Event>::type_names()); }
    });
    let dispatch = handlers.iter().map(|h| dispatch(krate, h));
    let reset = reset.as_ref().map(|Reset { method, is_async }| {
        let call = if *is_async { quote!(self.#method().await) } else { quote!(self.#method()) };
        quote! {
            async fn reset(&mut self) -> ::core::result::Result<(), #krate::error::BoxError> {
                #krate::__private::reset_result(#call)
            }
        }
    });
    let body = quote! {
        #(#dispatch)*
        ::core::result::Result::Ok(())
    };
    let filter = quote! {
        let mut __orchestrix_names: #krate::__private::Vec<&'static str> = #krate::__private::Vec::new();
        #(#filters)*
        #krate::store::EventFilter::types(__orchestrix_names)
    };
    projection_impl(krate, item, name, &filter, &body, reset.as_ref())
}

/// The block, plus an empty `Projection` impl when one can be written, so
/// that registering the projection raises no further error.
pub(crate) fn fallback(model: &Model) -> TokenStream {
    match model {
        Model::Impl { krate, item, name, implementable: true, .. } => {
            let filter = quote!(#krate::store::EventFilter::types(#krate::__private::Vec::<&'static str>::new()));
            let body = quote!(::core::result::Result::Ok(()));
            projection_impl(krate, item, name, &filter, &body, None)
        }
        Model::Impl { item, .. } => quote!(#item),
        Model::Other(tokens) => tokens.clone(),
    }
}

fn projection_impl(
    krate: &TokenStream,
    item: &syn::ItemImpl,
    name: &str,
    filter: &TokenStream,
    handle: &TokenStream,
    reset: Option<&TokenStream>,
) -> TokenStream {
    let self_ty = &item.self_ty;
    quote! {
        #item

        const _: () = {
            #[automatically_derived]
            #[#krate::__private::async_trait]
            impl #krate::projection::Projection for #self_ty {
                fn name(&self) -> #krate::__private::Cow<'static, str> {
                    #krate::__private::Cow::Borrowed(#name)
                }

                fn filter(&self) -> #krate::store::EventFilter {
                    #filter
                }

                async fn handle(
                    &mut self,
                    record: &#krate::envelope::RecordedEvent,
                ) -> ::core::result::Result<(), #krate::error::BoxError> {
                    #handle
                }

                #reset
            }
        };
    }
}

/// Decodes the record into the handler's event type and calls it, when
/// the record is of one of that type's names.
fn dispatch(krate: &TokenStream, handler: &Handler) -> TokenStream {
    let Handler { event, method, output, with_record, is_async } = handler;
    let call = if *with_record { quote!(self.#method(event, record)) } else { quote!(self.#method(event)) };
    let call = if *is_async { quote!(#call.await) } else { call };
    // Spanned at the user's types: a type that is not an `Event` and a
    // result that is not `Result<(), E>` are reported there.
    let decode = quote_spanned! {event.span()=>
        <#event as #krate::Event>::event_types().iter().any(|t| t.name == record.event_type)
    };
    let result = quote_spanned! {output.span()=>
        let __orchestrix_result: ::core::result::Result<(), _> = #call;
    };
    quote! {
        if #decode {
            let event: #event = record.decode::<#event>()?;
            #result
            return #krate::__private::handler_result(__orchestrix_result);
        }
    }
}
