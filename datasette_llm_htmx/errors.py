"""Problems a person can act on: shown beside the form they came from, with
what they typed kept, and an HTTP status that says whose turn it is."""


class ShownError(Exception):
    status = 400

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
