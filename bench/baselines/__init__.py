"""The two common designs our stack is measured against: predicting inside the request
(``no_queue``) and one Celery task per request with a blocking wait (``plain_template``)."""
