"""cryoglean: harvest curated particle picks from cryo-EM projects, convert them, train pickers.

The importable work lives in the packages ``harvest`` (crawl, parse, catalog), ``converters``
(formats, label selection, images, denoising) and ``trainers`` (pickers, evaluation). This
package holds only the command line and the glue that spans them (demo, Slurm rendering).
"""

__version__ = "0.1.0"
