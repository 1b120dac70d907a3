"""The live debugger page in a real browser (Debian's chromium, headless, through chromedriver
and selenium): a person pastes a token, an event and a bad event are posted over HTTP, and both
appear on the page. Saves a screenshot. Usage: debugger_browser.py BASE_URL TOKEN SCREENSHOT"""
import json
import sys
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

base, token, screenshot = sys.argv[1], sys.argv[2], sys.argv[3]


def post(body):
    request = urllib.request.Request(
        f"{base}/v1/events",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,700"):
    options.add_argument(argument)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
try:
    driver.get(f"{base}/debugger")
    wait = WebDriverWait(driver, 15)
    # Nothing works without a token: a wrong one is refused on the page.
    driver.find_element(By.ID, "token").send_keys("not-a-token")
    driver.find_element(By.CSS_SELECTOR, "#connect button").click()
    wait.until(ready.text_to_be_present_in_element((By.ID, "status"), "Refused (401)"))
    field = driver.find_element(By.ID, "token")
    field.clear()
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#connect button").click()
    wait.until(ready.text_to_be_present_in_element((By.ID, "status"), "Watching live"))
    assert token not in driver.current_url, "the token must never be in a URL"

    assert post({"event_type": "checkout.completed", "occurred_at": "2025-12-22T10:30:00Z",
                 "idempotency_key": "browser-1", "data": {"order": 17, "total": 99.5}}) == 200
    assert post({"event_type": "checkout.completed", "occurred_at": "not a time",
                 "idempotency_key": "browser-2", "data": {"order": 18}}) == 400
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#entries li.accepted")) >= 1)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#entries li.rejected")) >= 1)
    accepted = driver.find_element(By.CSS_SELECTOR, "#entries li.accepted").text
    rejected = driver.find_element(By.CSS_SELECTOR, "#entries li.rejected").text
    assert "checkout.completed" in accepted and "browser-1" in accepted, accepted
    assert "400" in rejected and "validation-failed" in rejected, rejected
    # Newest first: the rejected request came last.
    first = driver.find_element(By.CSS_SELECTOR, "#entries li")
    assert "rejected" in first.get_attribute("class"), first.get_attribute("class")
    # Expand the accepted event to see its data.
    driver.find_element(By.CSS_SELECTOR, "#entries li.accepted summary").click()
    time.sleep(0.2)
    assert "99.5" in driver.find_element(By.CSS_SELECTOR, "#entries li.accepted pre").text
    driver.save_screenshot(screenshot)
    print("browser: the page showed the accepted event and the rejected request: ok")
finally:
    driver.quit()
