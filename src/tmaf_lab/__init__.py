"""tmaf_lab: experiments, CLI, data loaders and reports built on the ``tmaf`` core.

The core library (``tmaf``) imports only torch; everything here may use the
``lab`` extra (numpy, matplotlib, tqdm, pillow).
"""
