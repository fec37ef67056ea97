"""(filled by its module files)"""
