"""converters: picker formats (one module each, one registry), label selection from the catalog,
micrograph images, denoising, export and import."""
