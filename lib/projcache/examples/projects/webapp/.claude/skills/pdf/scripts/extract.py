"""Print the text of every page of a PDF."""
import sys

def main(path: str) -> None:
    print(f"would extract {path}")

if __name__ == "__main__":
    main(sys.argv[1])
