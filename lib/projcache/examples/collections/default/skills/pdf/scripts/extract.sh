#!/bin/sh
# Print the text of every page of a PDF.
exec pdftotext -layout "$1" -
