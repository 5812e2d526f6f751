//! Examples of embedding the PACS engine; see the `examples` folder.
