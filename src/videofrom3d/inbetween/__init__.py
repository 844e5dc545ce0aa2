"""inbetween"""
